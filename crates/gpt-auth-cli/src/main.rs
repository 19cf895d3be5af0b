//! `gpt-auth`: operator's tool for gpt_auth. Generates keys, mints session cookies (for a script,
//! a bot or a test that needs a long-lived session) and inspects cookies when debugging a setup.

use std::fs;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use gpt_auth_core::duration::parse_seconds;
use gpt_auth_core::keys::{encode_key, KeyRing};
use gpt_auth_core::session::{self, valid_email};

#[derive(Parser)]
#[command(
    name = "gpt-auth",
    version,
    about = "Keys and session cookies for the gpt_auth nginx module"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new random key: one line for a gpt_auth_key_file (put the new key first to
    /// rotate; keep the old one below it until old sessions have expired).
    Keygen,
    /// Print the ids of the keys in a key file (the first one signs).
    KeyIds {
        #[arg(long, short = 'k')]
        key_file: String,
    },
    /// Print a signed session cookie value for EMAIL.
    Mint {
        #[arg(long, short = 'k')]
        key_file: String,
        /// The user the session is for.
        #[arg(long, short = 'e')]
        email: String,
        /// Lifetime (nginx time syntax: 7d, 12h, 90d ...). Sessions are also capped by the
        /// location's gpt_auth_cookie_max_age.
        #[arg(long, default_value = "7d")]
        ttl: String,
        /// Cookie name (gpt_auth_cookie_name); it is part of what is signed.
        #[arg(long, default_value = "gpt_auth")]
        cookie_name: String,
        /// Issue time (Unix seconds) instead of now, e.g. to make an already expired cookie.
        #[arg(long)]
        now: Option<u64>,
        /// Print `name=value` (for curl -b) instead of the bare value.
        #[arg(long)]
        pair: bool,
    },
    /// Print a line for a gpt_auth_revoked file that revokes EMAIL's sessions and API keys
    /// issued up to now (append it: `gpt-auth revoke alice@example.com >> revoked.txt`).
    Revoke {
        /// The user whose sessions end.
        email: String,
        /// The time instead of now (Unix seconds).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Decode a cookie value, verify it against a key file and say why it is (not) valid.
    Inspect {
        #[arg(long, short = 'k')]
        key_file: String,
        #[arg(long, default_value = "gpt_auth")]
        cookie_name: String,
        /// gpt_auth_cookie_max_age of the location to check against.
        #[arg(long, default_value = "7d")]
        max_age: String,
        /// The cookie value (with or without a leading `name=`).
        value: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpt-auth: {e}");
            ExitCode::from(2)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn load_keys(path: &str) -> Result<KeyRing, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read \"{path}\": {e}"))?;
    KeyRing::parse(&text).map_err(|e| format!("\"{path}\" {e}"))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Keygen => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
            println!("{}", encode_key(&secret));
        }
        Command::Revoke { email, now } => {
            if !valid_email(&email) {
                return Err(format!("\"{email}\" is not an email address"));
            }
            let now = match now {
                Some(t) => t,
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| "the clock is before 1970".to_owned())?
                    .as_secs(),
            };
            println!("{}", gpt_auth_core::revocations::line(&email, now));
        }
        Command::KeyIds { key_file } => {
            let ring = load_keys(&key_file)?;
            for (i, key) in ring.keys().iter().enumerate() {
                println!("{}{}", key.id(), if i == 0 { " (signs)" } else { "" });
            }
        }
        Command::Mint { key_file, email, ttl, cookie_name, now, pair } => {
            let ring = load_keys(&key_file)?;
            if !valid_email(&email) {
                return Err(format!("\"{email}\" is not a usable address"));
            }
            let ttl = parse_seconds(&ttl).map_err(|e| format!("--ttl: {e}"))?;
            let iat = now.unwrap_or_else(unix_now);
            let value = session::encode(ring.signing_key(), &cookie_name, &email, iat, iat + ttl);
            if pair {
                println!("{cookie_name}={value}");
            } else {
                println!("{value}");
            }
        }
        Command::Inspect { key_file, cookie_name, max_age, value } => {
            let ring = load_keys(&key_file)?;
            let max_age = parse_seconds(&max_age).map_err(|e| format!("--max-age: {e}"))?;
            let prefix = format!("{cookie_name}=");
            let value = value.trim().strip_prefix(&prefix).unwrap_or(value.trim());
            match session::inspect_unverified(value) {
                Some(f) => {
                    println!("version:  {}", f.version);
                    println!("key id:   {}", f.key_id);
                    println!("email:    {}", f.email.as_deref().unwrap_or("(unreadable)"));
                    let t = |v: Option<u64>| v.map_or("(unreadable)".into(), |v| v.to_string());
                    println!("issued:   {}", t(f.iat));
                    println!("expires:  {}", t(f.exp));
                }
                None => println!("not a gpt_auth session cookie (expected 6 dot-separated fields)"),
            }
            return Ok(
                match session::decode(&ring, &cookie_name, value.as_bytes(), unix_now(), max_age) {
                    Ok(_) => {
                        println!("result:   valid");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        println!("result:   invalid: {e}");
                        ExitCode::from(1)
                    }
                },
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
