// A virtualised table: only the rows in view (plus a small margin) exist in the DOM,
// a fixed pool reused as the view scrolls, so 100k nodes cost as much to draw as 30.
// The caller owns the list of ids (kept sorted by the membership model) and says
// when it changed; drawing happens at most once per animation frame.

const OVERSCAN = 6;

export class VirtualTable {
  /**
   * @param {object} parts viewport, spacer, rows, empty (elements), grid (for aria)
   * @param {function} cells (id, cellElements) fills one row's cells; returns nothing
   * @param {function} onSelect (id) called when a row is clicked or chosen by keyboard
   */
  constructor(parts, cells, onSelect) {
    Object.assign(this, parts);
    this.cells = cells;
    this.onSelect = onSelect;
    this.ids = [];
    this.selected = null;
    this.pool = [];
    this.rowHeight = 0;
    this.pending = false;
    this.version = 0; // bumped when row contents may have changed
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(this.viewport);
    this.rows.addEventListener("click", (event) => {
      const row = event.target.closest(".row");
      if (row && row.dataset.id !== undefined) this.onSelect(row.dataset.id);
    });
    this.viewport.addEventListener("keydown", (event) => this.key(event));
  }

  /** The list to show (sorted ids); the table keeps the reference. */
  setIds(ids) {
    this.ids = ids;
    this.changed();
  }

  /** Something in the list or in a shown node changed: redraw soon. */
  changed() {
    this.version++;
    this.schedule();
  }

  select(id) {
    this.selected = id;
    this.changed();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  measure() {
    if (!this.rowHeight) {
      const probe = this.makeRow();
      this.rows.appendChild(probe);
      this.rowHeight = probe.getBoundingClientRect().height || 30;
      probe.remove();
    }
    return this.rowHeight;
  }

  makeRow() {
    const row = document.createElement("div");
    row.className = "row";
    row.setAttribute("role", "row");
    for (let i = 0; i < 4; i++) {
      const cell = document.createElement("span");
      cell.setAttribute("role", "gridcell");
      row.appendChild(cell);
    }
    return row;
  }

  draw() {
    const height = this.measure();
    const total = this.ids.length;
    this.spacer.style.height = `${total * height}px`;
    this.grid.setAttribute("aria-rowcount", String(total));
    this.empty.hidden = total > 0;
    const top = this.viewport.scrollTop;
    const visible = Math.ceil(this.viewport.clientHeight / height) + 1;
    const first = Math.max(0, Math.floor(top / height) - OVERSCAN);
    const last = Math.min(total, first + visible + 2 * OVERSCAN);
    const count = Math.max(0, last - first);
    while (this.pool.length < count) {
      const row = this.makeRow();
      this.pool.push(row);
      this.rows.appendChild(row);
    }
    while (this.pool.length > count) this.pool.pop().remove();
    this.rows.style.transform = `translateY(${first * height}px)`;
    for (let i = 0; i < count; i++) {
      const row = this.pool[i];
      const id = this.ids[first + i];
      const index = first + i;
      if (row._id !== id || row._version !== this.version) {
        row._id = id;
        row._version = this.version;
        row.dataset.id = id;
        row.setAttribute("aria-rowindex", String(index + 1));
        this.cells(id, row.children, row);
      }
      row.classList.toggle("selected", id === this.selected);
    }
  }

  /** Scrolls so that row `index` is in view. */
  reveal(index) {
    const height = this.measure();
    const top = index * height;
    const view = this.viewport;
    if (top < view.scrollTop) view.scrollTop = top;
    else if (top + height > view.scrollTop + view.clientHeight) {
      view.scrollTop = top + height - view.clientHeight;
    }
  }

  key(event) {
    if (!["ArrowDown", "ArrowUp", "PageDown", "PageUp", "Home", "End"].includes(event.key)) return;
    if (this.ids.length === 0) return;
    event.preventDefault();
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / this.measure()) - 1);
    let index = this.selected === null ? -1 : indexOf(this.ids, this.selected);
    const step = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page }[event.key];
    if (event.key === "Home") index = 0;
    else if (event.key === "End") index = this.ids.length - 1;
    else index = Math.min(this.ids.length - 1, Math.max(0, index + step));
    this.reveal(index);
    this.onSelect(this.ids[index]);
  }
}

/** Index of `id` in the sorted array `ids`, or the index where it would go, negated
 * minus one (like Java's binarySearch). */
export function search(ids, id) {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < ids.length && ids[lo] === id ? lo : -lo - 1;
}

function indexOf(ids, id) {
  const at = search(ids, id);
  return at < 0 ? -at - 1 : at;
}

/** Inserts `id` into the sorted array (no-op when present). */
export function insertSorted(ids, id) {
  const at = search(ids, id);
  if (at < 0) ids.splice(-at - 1, 0, id);
}

/** Removes `id` from the sorted array (no-op when absent). */
export function removeSorted(ids, id) {
  const at = search(ids, id);
  if (at >= 0) ids.splice(at, 1);
}
