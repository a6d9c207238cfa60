//! The domain: plain types and pure rules the engine, the stores and the HTTP layer share. It
//! depends on the adapters' model and on no web, database or HTTP-client crate.

pub mod code;
pub mod delivery;
pub mod error;
pub mod job;
pub mod live;
pub mod request;
pub mod time;
