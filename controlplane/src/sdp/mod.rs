//! SDP for the server-side offer (see `docs/signaling.md`): [`offer::write_offer`] writes what we offer,
//! [`answer::parse_answer`] reads what the browser answers.

pub mod answer;
pub mod offer;

pub use answer::{Answer, AnswerSection, Direction, SdpError, parse_answer};
pub use offer::{Downlink, OfferParams, Section, SectionRole, write_offer};
