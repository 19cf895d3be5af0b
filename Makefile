# gpt_auth: build, test, run and install the nginx module.
#
#   make          build the module against this machine's nginx (installs packages it needs)
#   make test     cargo tests + the Test::Nginx suite (t/*.t)
#   make prove-upstream  the same suite under the upstream nginx-tests library (NGINX_TESTS_LIB)
#   make run      demo on http://127.0.0.1:8080/ (DEMO_PORT=, DEMO_IDP_PORT=, DEMO_AI_PORT=)
#   make install  module + load_module snippet into the system nginx
#   make bench    performance: vs no auth, secure_link, auth_request (bench/README.md)
#   make fuzz     every fuzz target FUZZ_SECONDS (60) s; corpus kept in fuzz/corpus (fuzz/README.md)
#   make fuzz-smoke  every fuzz target briefly on the committed corpus (CI)
#   make check-nginx-build  build with ./configure --add-dynamic-module (the config file), load it
#
# NGINX_SOURCE_DIR=/path/to/nginx  build against another, already configured nginx source tree
#                                  (configured --with-compat, with objs/ present).
# NGINX_TESTS_LIB=/path/to/lib     lib/ of nginx-tests for prove-upstream (default: ../shared/
#                                  nginx-tests/lib, relative to this repository).

SHELL         := /bin/bash
MODULE        := ngx_http_gpt_auth_module
BUILD_DIR     := $(CURDIR)/build
NGINX         ?= /usr/sbin/nginx
DEBIAN_SRC    ?= /usr/share/nginx/src
CARGO         ?= cargo
PROVE         ?= prove
TESTS         ?= t/

ifdef NGINX_SOURCE_DIR
NGINX_BUILD_DIR ?= $(NGINX_SOURCE_DIR)/objs
NGINX_CONFIGURED := $(NGINX_BUILD_DIR)/ngx_auto_config.h
else
NGINX_BUILD_DIR ?= $(BUILD_DIR)/nginx/objs
NGINX_CONFIGURED := $(BUILD_DIR)/nginx/.configured
endif

MODULE_SO     := $(BUILD_DIR)/$(MODULE).so
HOOKS_SO      := $(BUILD_DIR)/$(MODULE)-test-hooks.so
CARGO_SO      := target/release/lib$(MODULE).so
CLI           := target/release/gpt-auth
CARGO_ENV     := NGINX_BUILD_DIR="$(NGINX_BUILD_DIR)"

# Tests run the system nginx with the freshly built module loaded.
TEST_GLOBALS  := load_module $(MODULE_SO);
ifeq ($(shell id -u),0)
TEST_GLOBALS  += user root;
endif
TEST_ENV_COMMON := TEST_NGINX_GLOBALS="$(TEST_GLOBALS) $(TEST_NGINX_GLOBALS)" \
                 GPT_AUTH_CLI="$(CURDIR)/$(CLI)" GPT_AUTH_TEST_HOOKS_MODULE="$(HOOKS_SO)" \
                 RUST_BACKTRACE=1
TEST_ENV      := TEST_NGINX_BINARY="$(NGINX)" $(TEST_ENV_COMMON)

# The upstream nginx-tests library (unmodified, not part of this repository): its lib/ directory,
# absolute or relative to this repository. nginx runs through a wrapper that hides the
# --with-X=dynamic flags of Debian's `nginx -V`: upstream would load those modules, and Debian does
# not install all of them.
NGINX_TESTS_LIB ?= ../shared/nginx-tests/lib
NGINX_TESTS_LIB_DIR = $(abspath $(if $(filter /%,$(NGINX_TESTS_LIB)),,$(CURDIR)/)$(NGINX_TESTS_LIB))
UPSTREAM_ENV  := TEST_NGINX_BINARY="$(CURDIR)/tools/nginx-tests-wrapper.sh" GPT_AUTH_NGINX="$(NGINX)" \
                 $(TEST_ENV_COMMON)

# Install locations (Debian layout).
DESTDIR       ?=
PREFIX        ?= /usr/local
MODULES_DIR   ?= /usr/lib/nginx/modules
MODULES_AVAIL ?= /usr/share/nginx/modules-available
MODULES_ENAB  ?= /etc/nginx/modules-enabled
SNIPPETS_DIR  ?= /etc/nginx/snippets

.PHONY: check-nginx-build all build build-test-hooks deps test test-valgrind unittest prove prove-upstream nginx-tests-lib check run bench fuzz fuzz-smoke install uninstall clean help

all: build

help:
	@sed -n '2,17p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@tools/install-deps.sh test

# Configure a private copy of Debian's nginx source with the flags Debian's nginx was built with
# (they include --with-compat), so the module is binary compatible with the installed nginx.
$(BUILD_DIR)/nginx/.configured:
	@tools/install-deps.sh build
	rm -rf $(BUILD_DIR)/nginx
	mkdir -p $(BUILD_DIR)
	cp -r $(DEBIAN_SRC) $(BUILD_DIR)/nginx
	cd $(BUILD_DIR)/nginx && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
		> $(BUILD_DIR)/nginx-configure.log 2>&1 \
		|| { tail -20 $(BUILD_DIR)/nginx-configure.log; exit 1; }
	touch $@

$(NGINX_SOURCE_DIR)/objs/ngx_auto_config.h:
	@echo "NGINX_SOURCE_DIR=$(NGINX_SOURCE_DIR) is not configured: run its ./configure --with-compat first" >&2
	@exit 1

# The module file is replaced atomically: a running nginx may have the old one mapped.
build: $(NGINX_CONFIGURED)
	$(CARGO_ENV) $(CARGO) build --release --workspace
	mkdir -p $(BUILD_DIR)
	cp $(CARGO_SO) $(MODULE_SO).tmp && mv -f $(MODULE_SO).tmp $(MODULE_SO)

# A variant with test-only fault injection (src/test_hooks.rs), for t/gpt_auth_panic.t.
build-test-hooks: $(NGINX_CONFIGURED)
	$(CARGO_ENV) $(CARGO) build --profile test-hooks --features test-hooks -p $(MODULE)
	cp target/test-hooks/lib$(MODULE).so $(HOOKS_SO).tmp && mv -f $(HOOKS_SO).tmp $(HOOKS_SO)

unittest:
	$(CARGO) test --workspace --exclude $(MODULE)

prove: build build-test-hooks
	@tools/install-deps.sh test
	$(TEST_ENV) $(PROVE) $(TESTS)

# Fails when the library is not there: a run that skipped it must not look like a pass.
nginx-tests-lib:
	@test -f "$(NGINX_TESTS_LIB_DIR)/Test/Nginx.pm" || { \
	    echo "prove-upstream: no upstream nginx-tests library at $(NGINX_TESTS_LIB_DIR)" \
	         "(no Test/Nginx.pm there); set NGINX_TESTS_LIB=/path/to/nginx-tests/lib" >&2; exit 1; }

prove-upstream: nginx-tests-lib build build-test-hooks
	@tools/install-deps.sh test
	$(UPSTREAM_ENV) $(PROVE) -I "$(NGINX_TESTS_LIB_DIR)" $(TESTS)

test: build unittest prove

# The whole Test::Nginx suite with nginx under valgrind memcheck: single-process mode
# (master_process off), except the files that need a master process: those that reload nginx
# (it does not reconfigure reliably without one) and those that test several workers; their
# workers are checked too (valgrind follows fork).
VALGRIND_DIR  := $(BUILD_DIR)/valgrind
MASTER_TESTS   = $(shell grep -l -e '->reload' -e 'reload_and_wait' -e '^worker_processes [2-9]' t/*.t)
VALGRIND_ENV  := TEST_NGINX_BINARY="$(CURDIR)/tools/valgrind-nginx.sh" GPT_AUTH_NGINX="$(NGINX)" \
                 VALGRIND_LOG_DIR="$(VALGRIND_DIR)" TEST_NGINX_TIMEOUT_FACTOR=8 \
                 GPT_AUTH_CLI="$(CURDIR)/$(CLI)" GPT_AUTH_TEST_HOOKS_MODULE="$(HOOKS_SO)"
test-valgrind: build build-test-hooks
	@tools/install-deps.sh test
	@command -v valgrind >/dev/null || apt-get install -y -q valgrind
	rm -rf $(VALGRIND_DIR) && mkdir -p $(VALGRIND_DIR)
	-$(VALGRIND_ENV) TEST_NGINX_GLOBALS="$(TEST_GLOBALS) master_process off; $(TEST_NGINX_GLOBALS)" \
	    $(PROVE) $(filter-out $(MASTER_TESTS),$(wildcard t/*.t)) 2>&1 | tee $(VALGRIND_DIR)/prove-single.log
	-$(VALGRIND_ENV) TEST_NGINX_GLOBALS="$(TEST_GLOBALS) $(TEST_NGINX_GLOBALS)" \
	    $(PROVE) $(MASTER_TESTS) 2>&1 | tee $(VALGRIND_DIR)/prove-master.log
	tools/valgrind-report.sh $(VALGRIND_DIR)

check: $(NGINX_CONFIGURED)
	$(CARGO) fmt --all -- --check
	$(CARGO_ENV) $(CARGO) clippy --workspace --all-targets -- -D warnings

run: build
	@tools/install-deps.sh run
	@DEMO_PORT="$(DEMO_PORT)" DEMO_IDP_PORT="$(DEMO_IDP_PORT)" DEMO_AI_PORT="$(DEMO_AI_PORT)" \
	    tools/run-demo.sh "$(NGINX)" "$(MODULE_SO)" "$(CURDIR)/$(CLI)"

bench: build
	@bench/run.sh "$(NGINX)" "$(MODULE_SO)" "$(CURDIR)/$(CLI)"

# Fuzzing needs no nginx: the targets link gpt-auth-core only (fuzz/README.md).
fuzz:
	tools/fuzz.sh run

fuzz-smoke:
	tools/fuzz.sh smoke

# The module built by nginx's own build system (the `config` file), against Debian's tree.
check-nginx-build: build
	tools/check-nginx-build.sh "$(NGINX)" "$(CURDIR)/$(CLI)"

install: build
	install -D -m 0644 $(MODULE_SO) $(DESTDIR)$(MODULES_DIR)/$(MODULE).so
	install -D -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/gpt-auth
	mkdir -p $(DESTDIR)$(MODULES_AVAIL) $(DESTDIR)$(MODULES_ENAB)
	echo "load_module $(MODULES_DIR)/$(MODULE).so;" > $(DESTDIR)$(MODULES_AVAIL)/mod-http-gpt-auth.conf
	ln -sf $(MODULES_AVAIL)/mod-http-gpt-auth.conf $(DESTDIR)$(MODULES_ENAB)/50-mod-http-gpt-auth.conf
	install -D -m 0644 nginx-conf/gpt_auth_fetch.conf $(DESTDIR)$(SNIPPETS_DIR)/gpt_auth_fetch.conf
	@echo "installed (the module is enabled in $(MODULES_ENAB): no load_module needed);"
	@echo "include $(SNIPPETS_DIR)/gpt_auth_fetch.conf in your login server; check with: nginx -t"

uninstall:
	rm -f $(DESTDIR)$(MODULES_DIR)/$(MODULE).so $(DESTDIR)$(PREFIX)/bin/gpt-auth \
		$(DESTDIR)$(MODULES_AVAIL)/mod-http-gpt-auth.conf \
		$(DESTDIR)$(SNIPPETS_DIR)/gpt_auth_fetch.conf \
		$(DESTDIR)$(MODULES_ENAB)/50-mod-http-gpt-auth.conf

clean:
	$(CARGO) clean
	rm -rf $(BUILD_DIR)
