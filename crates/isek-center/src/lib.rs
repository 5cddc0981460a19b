//! The Isek Center.
