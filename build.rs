//! Build script: passes the nginx features detected by `nginx-sys` on to this crate as cfg
//! values (`ngx_feature`, `ngx_os`), as `ngx`'s own logging macros expect.
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
}
