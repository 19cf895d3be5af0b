//! `$gpt_auth_email` (the signed-in, allowed user; empty otherwise) and `$gpt_auth_result`
//! (`allowed`, `missing`, `invalid`, `expired` or `not_allowed`; empty where no session can be
//! checked). They work in every phase: the first use computes the verdict, the access handler
//! reuses it.

use super::verdict;

ngx_entry! {
    pub variable fn email(r) {
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::maybe_panic(r, "variable");
        verdict::current(r)?.allowed_email()
    }
}

ngx_entry! {
    pub variable fn result(r) {
        verdict::current(r).map(|v| v.outcome.as_str().as_bytes())
    }
}
