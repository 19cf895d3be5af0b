//! One AI API request and its answer, as the module follows it: what the request asked for
//! (read in the access phase), what the answer says (read by the filters as it passes), and
//! what was charged (in the log phase). Stashed in the main request's pool.

use core::cell::RefCell;

use gpt_auth_core::usage::response::{Disposition, StreamMeter};
use gpt_auth_core::usage::sse::{Item, Parser};
use gpt_auth_core::usage::{Api, Usage};
use ngx::http::Request;

use crate::conf::usage::ApiFlavor;
use crate::ngx::pool::{self, PoolStr};

/// How the answer is read.
// One per followed request, in its pool and never copied around: the size of the stream
// variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Reading {
    /// Not decided yet (before the response header).
    Pending,
    /// A whole JSON answer, copied as it passes (up to a limit).
    Json(Vec<u8>),
    /// A server-sent event stream: parsed as it passes.
    Stream(StreamReading),
    /// A model list to filter: held until complete (up to a limit), then rewritten.
    Models(Vec<u8>),
    /// Not read: why (for the log line of the fallback).
    Skipped(&'static str),
}

/// A stream being read.
pub struct StreamReading {
    pub parser: Parser,
    pub meter: StreamMeter,
    /// The usage chunk the module asked for is cut out (then the bytes of the event in
    /// progress are held back until it is complete).
    pub strip: bool,
    /// Bytes held back, from stream offset `held_from`.
    pub held: Vec<u8>,
    pub held_from: u64,
    /// Spans of events to cut out, not yet sent past.
    pub cut: Vec<(u64, u64)>,
}

impl StreamReading {
    pub fn new(api: Api, strip: bool) -> StreamReading {
        StreamReading {
            parser: Parser::new(),
            meter: StreamMeter::new(api, strip),
            strip,
            held: Vec::new(),
            held_from: 0,
            cut: Vec::new(),
        }
    }

    /// The next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        let (meter, cut) = (&mut self.meter, &mut self.cut);
        self.parser.feed(bytes, |item| on_item(meter, item, cut));
    }

    /// The stream's end.
    pub fn finish(&mut self) {
        let (meter, cut) = (&mut self.meter, &mut self.cut);
        self.parser.finish(|item| on_item(meter, item, cut));
    }
}

#[inline]
fn on_item(meter: &mut StreamMeter, item: Item<'_>, cut: &mut Vec<(u64, u64)>) {
    if let Item::Event(e) = item {
        if meter.on_event(&e) == Disposition::Remove {
            cut.push((e.span.start, e.span.end));
        }
    }
}

/// What was charged, for the variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Charged {
    pub usage: Usage,
    pub cost: Option<u64>,
    pub source: Source,
}

/// Where the charged usage comes from (`$gpt_auth_usage_source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// Nothing metered (a model list, or metering off): the variables are empty.
    #[default]
    Unmetered,
    /// The provider's own usage.
    Reported,
    /// The documented fallback (the answer did not say).
    Estimated,
    /// No usage to charge: the upstream failed to answer (nothing charged) or answered with
    /// an error (4xx: one request, no tokens).
    Failed,
}

pub struct State {
    pub reading: Reading,
    pub status: usize,
    pub response_bytes: u64,
    /// The model the answer names (else the one asked for).
    pub answered_model: Option<String>,
    pub charged: Option<Charged>,
}

pub struct Exchange {
    pub api: Option<Api>,
    /// The API's error format (for answers made after the access phase).
    #[allow(dead_code)]
    pub flavor: ApiFlavor,
    /// The model asked for (lower case as sent).
    pub model: Option<String>,
    pub request_bytes: u64,
    /// The usage chunk of a stream was asked for by the module, not the client.
    pub strip: bool,
    /// A model list to filter for this user.
    pub filter_models: bool,
    /// The user (for the model filter).
    pub user: PoolStr,
    pub state: RefCell<State>,
}

impl Exchange {
    pub fn new(api: Option<Api>, flavor: ApiFlavor, user: PoolStr) -> Exchange {
        Exchange {
            api,
            flavor,
            model: None,
            request_bytes: 0,
            strip: false,
            filter_models: false,
            user,
            state: RefCell::new(State {
                reading: Reading::Pending,
                status: 0,
                response_bytes: 0,
                answered_model: None,
                charged: None,
            }),
        }
    }
}

/// The exchange of this (main) request, if the module follows one.
pub fn get(r: &Request) -> Option<&Exchange> {
    pool::stashed::<Exchange>(r)
}
