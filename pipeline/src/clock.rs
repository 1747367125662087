//! Time for rolling and lease decisions: the workspace's one injectable clock.

pub use edgeway_record::clock::{Clock, ManualClock, SystemClock};
