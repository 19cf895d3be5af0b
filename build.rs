//! Build script: passes the nginx features detected by `nginx-sys` on to this crate as cfg
//! values (`ngx_feature`, `ngx_os`), as `ngx`'s own logging macros expect, and says which
//! request structure the nginx version has (`ngx_cookie_list`: 1.23 keeps `Cookie` headers in
//! a linked list, `headers_in.cookie`, where 1.22 had an array).
use std::env;

fn main() {
    for (var, cfg) in [("DEP_NGINX_FEATURES", "ngx_feature"), ("DEP_NGINX_OS", "ngx_os")] {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rerun-if-env-changed={var}_CHECK");
        let allowed = env::var(format!("{var}_CHECK")).unwrap_or_else(|_| "any()".into());
        println!("cargo::rustc-check-cfg=cfg({cfg}, values({allowed}))");
        for value in env::var(var).unwrap_or_default().split(',').map(str::trim) {
            if !value.is_empty() {
                println!("cargo::rustc-cfg={cfg}=\"{value}\"");
            }
        }
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    println!("cargo::rustc-check-cfg=cfg(ngx_cookie_list)");
    let version: u64 =
        env::var("DEP_NGINX_VERSION_NUMBER").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if version >= 1_023_000 {
        println!("cargo::rustc-cfg=ngx_cookie_list");
    }
}
