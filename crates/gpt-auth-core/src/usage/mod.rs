//! Metering the use of AI APIs (OpenAI's chat completions, completions, Responses and
//! embeddings; Anthropic's Messages): what a request asks for ([`request`]), the answer's
//! server-sent events ([`sse`]), the tokens it used ([`response`]) and what they cost
//! ([`price`]), with the model-name globs shared by price rules and access rules ([`glob`]).
//!
//! Everything here is pure: the nginx module feeds bytes in and acts on what comes out.

pub mod glob;
pub mod models;
pub mod price;
pub mod request;
pub mod response;
pub mod sse;

pub use glob::glob_match;
pub use response::{Api, Usage};
