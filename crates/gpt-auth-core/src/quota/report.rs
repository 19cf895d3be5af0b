//! The usage report: per user (and per user and model) and per group, the current day's and
//! month's requests, tokens and cost; as JSON, CSV or the rows of an HTML table.

use super::budget::{format_usd, Amounts, Counters};
use super::key::Key;
use super::{format_utc, Clock, Periods};

/// One model's use by one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    pub model: String,
    pub day: Amounts,
    pub month: Amounts,
}

/// One user's use in the current periods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub email: String,
    pub day: Amounts,
    pub month: Amounts,
    /// Heaviest (by cost, then tokens) first.
    pub models: Vec<ModelRow>,
}

/// A group's (or everyone's) use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub name: String,
    pub day: Amounts,
    pub month: Amounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub users: Vec<UserRow>,
    pub groups: Vec<GroupRow>,
}

fn current(c: &Counters, p: &Periods) -> (Amounts, Amounts) {
    let day = if c.day == p.day { c.day_used } else { Amounts::default() };
    let month = if c.month == p.month { c.month_used } else { Amounts::default() };
    (day, month)
}

fn used(a: &Amounts) -> bool {
    *a != Amounts::default()
}

/// The report from a zone's entries: who used anything this month, heaviest users first (by
/// requests, then cost, then address).
pub fn build(entries: Vec<(Vec<u8>, Counters)>, p: &Periods) -> Report {
    let mut users: Vec<UserRow> = Vec::new();
    let mut models: Vec<(String, ModelRow)> = Vec::new();
    let mut groups = Vec::new();
    for (key, c) in entries {
        let (day, month) = current(&c, p);
        if !used(&month) {
            continue;
        }
        match Key::decode(&key) {
            Some(Key::User(email)) => users.push(UserRow { email, day, month, models: vec![] }),
            Some(Key::Model { email, model }) => {
                models.push((email, ModelRow { model, day, month }))
            }
            Some(Key::Group(name)) => groups.push(GroupRow { name, day, month }),
            None => {}
        }
    }
    users.sort_by(|a, b| {
        (b.month.requests, b.month.cost)
            .cmp(&(a.month.requests, a.month.cost))
            .then_with(|| a.email.cmp(&b.email))
    });
    for (email, m) in models {
        if let Some(u) = users.iter_mut().find(|u| u.email == email) {
            u.models.push(m);
        }
    }
    for u in &mut users {
        u.models.sort_by(|a, b| {
            (b.month.cost, b.month.tokens())
                .cmp(&(a.month.cost, a.month.tokens()))
                .then_with(|| a.model.cmp(&b.model))
        });
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Report { users, groups }
}

fn amounts_json(a: &Amounts) -> serde_json::Value {
    serde_json::json!({
        "requests": a.requests,
        "input_tokens": a.input,
        "output_tokens": a.output,
        "cost": format_usd(a.cost),
    })
}

/// The report as JSON. Per user `day` and `month` are request counts (as before budgets had
/// other units); `usage` has requests, input and output tokens and cost (US dollars, a string
/// with 6 decimals) per period, and `models` the same per model.
pub fn json(zone: &str, now: u64, p: &Periods, r: &Report) -> String {
    let users: Vec<serde_json::Value> = r
        .users
        .iter()
        .map(|u| {
            serde_json::json!({
                "email": u.email,
                "day": u.day.requests,
                "month": u.month.requests,
                "usage": {"day": amounts_json(&u.day), "month": amounts_json(&u.month)},
                "models": u.models.iter().map(|m| serde_json::json!({
                    "model": m.model,
                    "day": amounts_json(&m.day),
                    "month": amounts_json(&m.month),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let groups: Vec<serde_json::Value> = r
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({"name": g.name, "day": amounts_json(&g.day), "month": amounts_json(&g.month)})
        })
        .collect();
    let v = serde_json::json!({
        "zone": zone,
        "generated": format_utc(now),
        "day": Clock::day_label(p.day),
        "month": Clock::month_label(p.month),
        "day_resets": format_utc(p.day_ends),
        "month_resets": format_utc(p.month_ends),
        "users": users,
        "groups": groups,
    });
    let mut out = v.to_string();
    out.push('\n');
    out
}

/// A CSV field, quoted when needed (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(['=', '+', '-', '@']) {
        // Quoted; a leading formula character is neutralised for spreadsheets.
        let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The report as CSV: one line per user and period (model `*`: all models) and per user, model
/// and period; then the groups (`kind` `group`).
pub fn csv(p: &Periods, r: &Report) -> String {
    let mut out =
        String::from("period,kind,name,model,requests,input_tokens,output_tokens,cost_usd\r\n");
    let day = Clock::day_label(p.day);
    let month = Clock::month_label(p.month);
    let mut line = |period: &str, kind: &str, name: &str, model: &str, a: &Amounts| {
        out.push_str(&format!(
            "{period},{kind},{},{},{},{},{},{}\r\n",
            field(name),
            field(model),
            a.requests,
            a.input,
            a.output,
            format_usd(a.cost)
        ));
    };
    for u in &r.users {
        line(&day, "user", &u.email, "*", &u.day);
        line(&month, "user", &u.email, "*", &u.month);
        for m in &u.models {
            line(&day, "user", &u.email, &m.model, &m.day);
            line(&month, "user", &u.email, &m.model, &m.month);
        }
    }
    for g in &r.groups {
        line(&day, "group", &g.name, "*", &g.day);
        line(&month, "group", &g.name, "*", &g.month);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Clock;

    #[test]
    fn report() {
        let p = Clock::default().periods(1_795_935_600);
        let c = |day, requests, cost| Counters {
            day,
            month: p.month,
            day_used: Amounts { requests, cost, ..Default::default() },
            month_used: Amounts { requests, input: 10, output: 5, cost },
            ..Default::default()
        };
        let model = |e: &str, m: &str| Key::Model { email: e.into(), model: m.into() }.encode();
        let r = build(
            vec![
                (b"b@x.y".to_vec(), c(p.day, 3, 7)),
                (b"a@x.y".to_vec(), c(p.day - 1, 5, 1)),
                (b"old@x.y".to_vec(), Counters { month: p.month - 1, ..c(1, 1, 1) }),
                (model("a@x.y", "gpt-4o"), c(p.day, 2, 9)),
                (model("a@x.y", "mini"), c(p.day, 3, 1)),
                (Key::group_key("*"), c(p.day, 8, 8)),
            ],
            &p,
        );
        let names: Vec<&str> = r.users.iter().map(|u| u.email.as_str()).collect();
        assert_eq!(names, ["a@x.y", "b@x.y"]);
        assert_eq!(r.users[0].day, Amounts::default(), "yesterday's use is not today's");
        let models: Vec<&str> = r.users[0].models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(models, ["gpt-4o", "mini"]);
        assert_eq!(r.groups.len(), 1);
        let v: serde_json::Value =
            serde_json::from_str(&json("chat", 1_795_935_600, &p, &r)).unwrap();
        assert_eq!(v["users"][0]["email"], "a@x.y");
        assert_eq!(v["users"][0]["month"], 5);
        assert_eq!(v["users"][0]["usage"]["month"]["cost"], "0.000000");
        assert_eq!(v["users"][0]["models"][0]["model"], "gpt-4o");
        assert_eq!(v["groups"][0]["name"], "*");
        let csv = csv(&p, &r);
        assert!(csv.starts_with(
            "period,kind,name,model,requests,input_tokens,output_tokens,cost_usd\r\n"
        ));
        assert!(csv.contains("2026-11,user,a@x.y,gpt-4o,2,10,5,0.000000\r\n"), "{csv}");
        assert!(csv.contains("2026-11,group,*,*,8,10,5,0.000000\r\n"), "{csv}");
        assert_eq!(field("=cmd()"), "\"'=cmd()\"");
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}
