#!/usr/bin/perl

# gpt_auth: the real-browser end-to-end test. Debian's Chromium, driven by t/e2e/login-flow.mjs
# (playwright-core), goes through the whole login over TLS: nginx with a self-signed
# certificate for auth.corp.test, gpt.corp.test and gpt4.corp.test (three server blocks on one
# port), the test OpenID provider (t/oidc/provider.mjs) on plain http 127.0.0.1. It proves that
# the Secure, Domain=.corp.test cookie set by auth. is accepted by gpt4. and gpt., that a user
# the login site does not allow sees the not-allowed page (refused at the callback), and that
# logout works. Each check of the driver is one test here; the screenshots login.png and
# not-allowed.png are checked and copied to t/out/e2e/ (gitignored) for a human to look at.
#
# Needs node 20+, t/oidc/node_modules (npm ci --prefix t/oidc), /usr/bin/chromium and openssl:
# fails, never skips, without them.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use File::Copy qw/ copy /;
use File::Path qw/ make_path /;
use POSIX qw/ WNOHANG /;
use Time::HiRes qw/ time sleep /;

use Test::Nginx;
use GptAuth;
use GptAuthOidc;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my %peers = require_peers(chromium => 1);

my $t = Test::Nginx->new()->has(qw/http ssl proxy/);
my $d = $t->testdir();
my $repo = repo_dir();

# the certificate: one self-signed certificate for the three sites

my $openssl = `sh -c 'command -v openssl' 2>/dev/null`;
chomp $openssl;
my $cert_out = $openssl ? `"$openssl" req -x509 -newkey rsa:2048 -nodes -days 2 \\
	-keyout "$d/corp.key" -out "$d/corp.crt" -subj /CN=auth.corp.test \\
	-addext subjectAltName=DNS:auth.corp.test,DNS:gpt.corp.test,DNS:gpt4.corp.test 2>&1`
	: 'openssl not found';
unless (-s "$d/corp.crt" && -s "$d/corp.key") {
	plan(tests => 1);
	fail("self-signed certificate made with openssl: $cert_out");
	exit 1;
}

my $P = port(8443);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    default_type text/html;
    log_not_found off;

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_login_url https://auth.corp.test:%%PORT_8443%%/login;
    gpt_auth_logout_url https://auth.corp.test:%%PORT_8443%%/logout;
    gpt_auth_cookie_domain .corp.test;

    gpt_auth_provider test {
        issuer http://127.0.0.1:8090;
        client_id gpt;
        client_secret_file %%TESTDIR%%/client.secret;
        redirect_uri https://auth.corp.test:%%PORT_8443%%/callback;
        token_endpoint_auth client_secret_basic;
    }

    ssl_certificate %%TESTDIR%%/corp.crt;
    ssl_certificate_key %%TESTDIR%%/corp.key;

    # the login site: anybody of the company may sign in here
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  auth.corp.test;

        include %%REPO%%/nginx-conf/gpt_auth_fetch.conf;
        gpt_auth_allowlist %%TESTDIR%%/auth.allow;

        location = /login {
            gpt_auth_login test;
        }

        location = /callback {
            gpt_auth_callback;
        }

        location = /logout {
            gpt_auth_logout;
        }
    }

    # the gpt site: the whole company
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  gpt.corp.test;

        root %%TESTDIR%%/gpt;

        location / {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/gpt.allow;
        }
    }

    # the gpt4 site: alice only
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  gpt4.corp.test;

        root %%TESTDIR%%/gpt4;

        location / {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/gpt4.allow;
        }
    }
}

EOF

$conf =~ s/%%REPO%%/$repo/g;
$t->write_file_expand('nginx.conf', $conf);

my $CONTENT = 'GPT-4 chat, signed in';
my $SECOND = 'GPT home of corp.test';

$t->write_file('keys', key_line(new_key_bytes()) . "\n");
chmod 0600, "$d/keys";
$t->write_file('client.secret', "gpt-e2e-secret\n");
$t->write_file('auth.allow', "# the login site admits the company\n\@corp.test\n");
$t->write_file('gpt.allow', "\@corp.test\n");
$t->write_file('gpt4.allow', "alice\@corp.test\n");
mkdir("$d/$_") for qw/ gpt gpt4 /;
$t->write_file('gpt/index.html', "<!DOCTYPE html><title>GPT</title><h1>$SECOND</h1>\n");
$t->write_file('gpt4/chat', "<!DOCTYPE html><title>GPT-4</title><h1>$CONTENT</h1>\n");

my $op = start_provider($t, port => 8090, config => {
	clients => [ {
		client_id => 'gpt',
		client_secret => 'gpt-e2e-secret',
		redirect_uris => [ "https://auth.corp.test:$P/callback" ],
		token_endpoint_auth_method => 'client_secret_basic',
	} ],
	users => [
		{ email => 'alice@corp.test', email_verified => JSON::PP::true(), name => 'Alice',
			password => 'alice-pw' },
		{ email => 'mallory@evil.test', email_verified => JSON::PP::true(),
			name => 'Mallory', password => 'mallory-pw' },
	],
});

$t->run();

###############################################################################

# The driver: its TAP lines are collected first, then replayed as tests of this file.

my $out = "$d/e2e";
my @cmd = ($peers{node}, "$repo/t/e2e/login-flow.mjs",
	'--port', $P, '--out', $out, '--chromium', $peers{chromium},
	'--content', $CONTENT, '--second-content', $SECOND,
	'--email', 'alice@corp.test', '--password', 'alice-pw',
	'--denied-email', 'mallory@evil.test', '--denied-password', 'mallory-pw',
	'--total-timeout', '150000', '-v');

my $started = time();
my ($output, $exit, $killed) = run_driver(200, @cmd);
my $took = time() - $started;

my (@checks, $declared);
for my $line (split /\n/, $output) {
	if ($line =~ /^(not )?ok (\d+) - (.*)$/) {
		push @checks, { ok => !$1, n => $2, desc => $3 };
	} elsif ($line =~ /^1\.\.(\d+)$/) {
		$declared = $1;
	}
}

# The driver's fixed list of checks (see t/e2e/login-flow.mjs); a run that stops early
# reports the missing ones as failures.
my $EXPECTED = 21;
my $n = @checks > $EXPECTED ? scalar @checks : $EXPECTED;

$t->plan($n + 12);

diag(sprintf('driver ran %.1fs: %s', $took, join(' ', map { /\s/ ? "'$_'" : $_ } @cmd)))
	if $ENV{TEST_NGINX_VERBOSE};

my @comments = grep { /^#/ } split /\n/, $output;
for my $i (1 .. $n) {
	my $c = $checks[$i - 1];
	if (!$c) {
		fail("browser: check $i was not reported");
		next;
	}
	ok($c->{ok}, "browser: $c->{desc}");
}

is($exit, 0, 'driver exited 0') or diag("driver output:\n$output");
ok(!$killed, 'driver finished on its own (no hard timeout)');
is($declared, scalar @checks, 'driver printed its plan (1..N) after all checks');
is(join(' ', map { $_->{n} } @checks), join(' ', 1 .. scalar @checks),
	'driver checks numbered in order');

# the screenshots

my $keep = "$repo/t/out/e2e";
make_path($keep);
unlink glob("$keep/{login,not-allowed,fail-*}.{png,html}");
for my $f (glob("$out/*.png"), glob("$out/*.html")) {
	copy($f, $keep) or diag("copy $f to $keep: $!");
}

for my $shot (qw/ login not-allowed /) {
	my $png = png_info("$out/$shot.png");
	ok($png && $png->{size} > 1000 && $png->{width} >= 800 && $png->{height} >= 400,
		"screenshot $shot.png is a non-empty PNG"
		. ($png ? " ($png->{width}x$png->{height}, $png->{size} bytes)" : ''));
}

my $html = -f "$out/not-allowed.html" ? $t->read_file('e2e/not-allowed.html') : '';
like($html, qr{You are signed in as <b>mallory\@evil\.test</b>},
	'not-allowed page (as saved) names the user');

diag("screenshots copied to $keep") if -f "$keep/login.png" && $ENV{TEST_NGINX_VERBOSE};

# what nginx saw

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/gpt_auth: login: "alice\@corp\.test" signed in via provider "test".*request: "GET \/callback\?/,
	'log: alice signed in at the callback');
like($log, qr/gpt_auth: login refused: "mallory\@evil\.test" \(provider "test"\) is not on the allowlist "[^"]*auth\.allow"/,
	'log: mallory refused at the callback');
like($log, qr/gpt_auth: logout: "alice\@corp\.test"/, 'log: alice logged out');
is(join("\n", grep { /\[(?:error|crit)\]/ } split /\n/, $log), '', 'log: no errors');

my $oplog = $t->read_file('oidc.log');
is(join("\n", grep { /server_error|registered for|token endpoint error|interaction error/ }
	split /\n/, $oplog), '', 'provider log: no server errors');

###############################################################################

# Runs @cmd with stdout and stderr captured; kills it (SIGTERM, then SIGKILL) after $limit
# seconds. Returns (output, exit status, killed).
sub run_driver {
	my ($limit, @cmd) = @_;
	my $pid = open(my $fh, '-|') // die "fork: $!\n";
	if ($pid == 0) {
		open STDERR, '>&', \*STDOUT;
		exec { $cmd[0] } @cmd or do { print "exec $cmd[0] failed: $!\n"; POSIX::_exit(127) };
	}
	my ($output, $killed) = ('', 0);
	my $deadline = time() + $limit;
	my $sel = '';
	vec($sel, fileno($fh), 1) = 1;
	while (1) {
		my $left = $deadline - time();
		if ($left <= 0) {
			$killed = 1;
			kill 'TERM', $pid;
			sleep(3);
			kill 'KILL', $pid if waitpid($pid, WNOHANG) == 0;
			last;
		}
		my $r = $sel;
		next unless select($r, undef, undef, $left < 1 ? $left : 1);
		my $n = sysread($fh, my $buf, 65536);
		last unless $n;
		$output .= $buf;
		print map { "# | $_\n" } split /\n/, $buf if $ENV{TEST_NGINX_VERBOSE};
	}
	close $fh;
	my $status = $?;
	return ($output, $killed ? -1 : $status >> 8, $killed);
}

###############################################################################
