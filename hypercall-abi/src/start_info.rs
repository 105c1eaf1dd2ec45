//! TODO(helper): filled in by the ABI-structs work.
