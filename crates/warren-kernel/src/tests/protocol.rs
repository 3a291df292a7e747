//! The protocol as written (issue 14): monitors fire when a mailbox is destroyed, and used
//! one-shot reply handles leave the receiver's table by themselves.

use super::*;
