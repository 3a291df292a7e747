//! Warren's declarative vocabulary.
//!
//! The small, pure types every other crate shares when it talks about what an environment should
//! be: environment names, byte sizes (`64M`), cpu shares (`0.5`). Each parser rejects bad input
//! with an error that quotes the input and says what was expected. No I/O happens here; the
//! manifest parser and `plan(observed, desired)` will live here too.
#![forbid(unsafe_code)]

mod name;
mod quantity;

pub use name::{EnvName, NameError};
pub use quantity::{ByteSize, CpuQuota, QuantityError};
