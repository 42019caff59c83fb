//! The run modes, one module each, none importing another: `dump` (a dump file or stdin to a file
//! or stdout), `refresh` (a database to staging or to a dump), `preview` (`--dry-run`), `check` and
//! `scan`. What they share — opening a dump (`open`), judging a database source before anything is
//! written (`live`), sampling rows (`sample`) — lives beside them.

pub mod audit;
pub mod check;
pub mod dump;
pub mod live;
pub mod open;
pub mod preview;
pub mod refresh;
pub mod sample;
pub mod scan;
pub mod subset;
