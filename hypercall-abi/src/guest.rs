//! Guest-side wrappers (TODO)
