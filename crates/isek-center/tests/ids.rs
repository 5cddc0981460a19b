//! Look-alike node ids (issue 15 item 6): ids that are not NFC or hold an invisible
//! character are refused with a 400 naming the problem; with `--confusable-ids
//! refuse` (the default) a new id whose UTS #39 skeleton equals a live node's is
//! refused with a 409, and accepted again once that node is gone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::StatusCode;
use isek_center::{Config, ConfusableIds, Security};
use isek_testkit::router::TestCenter;
use isek_testkit::signed::parse;

/// A center with 30 s leases and `confusable_ids`.
async fn center(confusable_ids: ConfusableIds) -> TestCenter {
    TestCenter::with_config(Config {
        security: Security {
            confusable_ids,
            ..Security::default()
        },
        ..Config::in_memory(Duration::from_secs(30))
    })
    .await
}

#[tokio::test]
async fn ids_not_in_nfc_or_with_invisible_characters_are_refused_naming_the_problem() {
    let c = center(ConfusableIds::Allow).await;
    let answer = c.register("caf\u{e9}").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // The same word in NFD: e + COMBINING ACUTE ACCENT.
    let answer = c.register("cafe\u{301}").await;
    answer.assert_bad_request_naming("normalization form C (NFC)");
    answer.assert_bad_request_naming("cafe\\u{0301}");
    for (id, code) in [
        ("n1\u{200b}", "U+200B"),         // zero-width space
        ("\u{feff}n1", "U+FEFF"),         // BOM
        ("n\u{202e}1", "U+202E"),         // right-to-left override
        ("n1\u{200d}", "U+200D"),         // zero-width joiner
        ("n\u{2066}1\u{2069}", "U+2066"), // bidi isolate
    ] {
        let answer = c.register(id).await;
        answer.assert_bad_request_naming("invisible or format characters");
        answer.assert_bad_request_naming(code);
        // Renew and deregister take the same rule.
        c.renew(id).await.assert_bad_request_naming(code);
        c.deregister(id).await.assert_bad_request_naming(code);
    }
    assert_eq!(c.listed_ids().await, ["caf\u{e9}"]);
}

#[tokio::test]
async fn a_new_id_that_looks_like_a_live_one_is_refused_until_that_node_is_gone() {
    let c = center(ConfusableIds::default()).await;
    assert_eq!(c.register("paypal").await.status, StatusCode::OK);
    assert_eq!(c.register("node-1").await.status, StatusCode::OK);
    // Cyrillic а (U+0430) for Latin a; small l and capital I for digit 1.
    for (fake, real) in [
        ("p\u{430}ypal", "paypal"),
        ("node-l", "node-1"),
        ("node-I", "node-1"),
    ] {
        let answer = c.register(fake).await;
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
        let v = parse(&answer);
        assert_eq!(v["code"], 409);
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("looks like the live node '{real}'"))
                && message.contains("UTS #39"),
            "{message}"
        );
    }
    assert!(
        parse(&c.register("p\u{430}ypal").await)["message"]
            .as_str()
            .unwrap()
            .contains("p\\u{0430}ypal"),
        "the refusal shows what differs"
    );
    // The live node itself re-registers, renews and is not its own look-alike.
    assert_eq!(c.register("paypal").await.status, StatusCode::OK);
    assert_eq!(c.renew("paypal").await.status, StatusCode::OK);
    // Other ids are untouched.
    assert_eq!(c.register("node-2").await.status, StatusCode::OK);
    // Gone (deregistered): the look-alike is a new id like any other.
    assert_eq!(c.deregister("paypal").await.status, StatusCode::OK);
    assert_eq!(c.register("p\u{430}ypal").await.status, StatusCode::OK);
    // ... and now the Latin spelling is the look-alike.
    assert_eq!(c.register("paypal").await.status, StatusCode::CONFLICT);
    let mut ids = c.listed_ids().await;
    ids.sort();
    assert_eq!(ids, ["node-1", "node-2", "p\u{430}ypal"]);
}

#[tokio::test]
async fn an_expired_node_frees_its_skeleton() {
    let c = TestCenter::with_ttl(Duration::from_millis(300)).await;
    assert_eq!(c.register("node-1").await.status, StatusCode::OK);
    assert_eq!(c.register("node-l").await.status, StatusCode::CONFLICT);
    isek_testkit::condition::wait_until("node-1 expired", || async {
        c.listed_ids().await.is_empty()
    })
    .await;
    assert_eq!(c.register("node-l").await.status, StatusCode::OK);
}

#[tokio::test]
async fn look_alikes_are_accepted_with_allow() {
    let c = center(ConfusableIds::Allow).await;
    for id in ["paypal", "p\u{430}ypal", "node-1", "node-l"] {
        assert_eq!(c.register(id).await.status, StatusCode::OK, "{id}");
    }
    assert_eq!(c.listed_ids().await.len(), 4);
}
