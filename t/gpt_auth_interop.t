#!/usr/bin/perl

# gpt_auth: interoperability with a real, certified OpenID provider (npm oidc-provider 8.8.1,
# t/oidc/provider.mjs) over raw HTTP, no browser. The whole authorization code flow, for a
# client_secret_basic and a client_secret_post client: protected page -> 302 login page ->
# "Sign in with ..." -> the provider's /auth -> login form -> POST credentials -> back to the
# callback with code, state and iss -> 302 with the session cookie -> protected page 200.
# Then: a user not on the allowlist (403 page, no session), an unverified email (403), a user
# allowed at the login but not on the site (403 at the site), a replayed callback (400), the
# provider's Cancel (403), logout, single sign-on at the provider, and the error.log lines.
#
# Needs node 20+ and t/oidc/node_modules (npm ci --prefix t/oidc): fails, never skips, without.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthOidc;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

require_peers();

my $t = Test::Nginx->new()->has(qw/http proxy/);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_login_url http://127.0.0.1:8080/login;
    gpt_auth_logout_url http://127.0.0.1:8080/logout;
    gpt_auth_cookie_secure off;

    gpt_auth_provider basic {
        issuer http://127.0.0.1:8090;
        client_id gpt-basic;
        client_secret_file %%TESTDIR%%/basic.secret;
        redirect_uri http://127.0.0.1:8080/callback;
        token_endpoint_auth client_secret_basic;
    }

    gpt_auth_provider post {
        issuer http://127.0.0.1:8090;
        client_id gpt-post;
        client_secret_file %%TESTDIR%%/post.secret;
        redirect_uri http://127.0.0.1:8080/callback;
        token_endpoint_auth client_secret_post;
        scope openid email profile;
    }

    # the login site
    server {
        listen       127.0.0.1:8080;
        server_name  auth;

        # the protected site is on another port of 127.0.0.1: a host logins may return to
        gpt_auth_return_hosts 127.0.0.1;

        include %%REPO%%/nginx-conf/gpt_auth_fetch.conf;
        gpt_auth_allowlist %%TESTDIR%%/auth.allow;

        location = /login {
            gpt_auth_login basic post;
        }

        location = /callback {
            gpt_auth_callback;
        }

        location = /logout {
            gpt_auth_logout;
        }
    }

    # a protected site
    server {
        listen       127.0.0.1:8081;
        server_name  gpt;

        root %%TESTDIR%%/site;
        add_header X-User "$gpt_auth_email" always;

        location / {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/site.allow;
        }
    }
}

EOF

my $repo = repo_dir();
$conf =~ s/%%REPO%%/$repo/g;
$t->write_file_expand('nginx.conf', $conf);

# secrets with characters that client_secret_basic must form-encode and _post must escape
my %secret = (basic => 'b4sic:s3cret+/=%&x y', post => 'p0st&s3cret=+%;x y');
$t->write_file('keys', key_line(new_key_bytes()) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('basic.secret', "$secret{basic}\n");
$t->write_file('post.secret', "$secret{post}\n");
$t->write_file('auth.allow', "\@corp.test\n");
$t->write_file('site.allow', "alice\@corp.test\n");
mkdir($t->testdir() . '/site');
$t->write_file('site/page.html', "<p>protected page of the gpt site</p>\n");

my $AUTH = 'http://127.0.0.1:' . port(8080);
my $LOGIN = "$AUTH/login";
my $LOGOUT = "$AUTH/logout";
my $CALLBACK = "$AUTH/callback";
my $PAGE = 'http://127.0.0.1:' . port(8081) . '/page.html';
my $HTML = 'text/html,application/xhtml+xml,*/*;q=0.8';

my %users = (
	alice => { email => 'alice@corp.test', email_verified => JSON::PP::true(),
		password => 'alice-pw', name => 'Alice' },
	bob => { email => 'bob@corp.test', email_verified => JSON::PP::true(),
		password => 'bob-pw', name => 'Bob' },
	mallory => { email => 'mallory@evil.test', email_verified => JSON::PP::true(),
		password => 'mallory-pw', name => 'Mallory' },
	eve => { email => 'eve@corp.test', email_verified => JSON::PP::false(),
		password => 'eve-pw', name => 'Eve' },
);

my $op = start_provider($t, port => 8090, config => {
	clients => [
		{ client_id => 'gpt-basic', client_secret => $secret{basic},
			redirect_uris => [ $CALLBACK ],
			token_endpoint_auth_method => 'client_secret_basic' },
		{ client_id => 'gpt-post', client_secret => $secret{post},
			redirect_uris => [ $CALLBACK ],
			token_endpoint_auth_method => 'client_secret_post' },
	],
	users => [ map { $users{$_} } qw/ alice bob mallory eve / ],
});
my $ISSUER = $op->{issuer};

$t->run()->plan(77);

###############################################################################

# One login, as a browser would do it, stopping wherever it goes wrong. Returns every hop.
# sign_in(provider => NAME, user => NAME, [jar => $jar], [cancel => 1], [target => URL])
sub sign_in {
	my (%a) = @_;
	my $jar = $a{jar} // GptAuthOidc::Jar->new();
	my $target = $a{target} // $PAGE;
	my %s = (jar => $jar, trail => []);
	my $hop = sub {
		my ($name, $url) = @_;
		my $r = web('GET', $url, jar => $jar, accept => $HTML);
		push @{ $s{trail} }, status($r) . " GET $url";
		return $s{$name} = $r;
	};

	$hop->(protected => $target);
	$s{login_url} = location_of($s{protected}, $target) // return \%s;
	$hop->(login_page => $s{login_url});
	my ($link) = grep { $_->{href} =~ /[?&]provider=\Q$a{provider}\E(?:&|$)/ }
		links(body($s{login_page}));
	$s{link} = $link // return \%s;
	$s{start_url} = resolve_url($s{login_url}, $link->{href});
	$hop->(start => $s{start_url});
	$s{authorize_url} = location_of($s{start}, $s{start_url}) // return \%s;
	$s{sid} = url_params($s{authorize_url})->{state};

	my $u = $users{$a{user}};
	$s{op} = provider_sign_in($jar, $s{authorize_url}, email => $u->{email},
		password => $u->{password}, cancel => $a{cancel});
	push @{ $s{trail} }, @{ $s{op}{trail} };
	$s{callback_url} = $s{op}{url} // return \%s;
	$s{callback_cookie} = $jar->header_for($s{callback_url});
	$hop->(callback => $s{callback_url});
	$s{return_url} = location_of($s{callback}, $s{callback_url}) // return \%s;
	$hop->(back => $s{return_url});
	return \%s;
}

sub trail {
	my ($s) = @_;
	diag(join("\n", 'hops:', @{ $s->{trail} }));
}

sub session_set_cookie {
	my ($r) = @_;
	my $c = set_cookies($r // '')->{gpt_auth};
	return $c && $c->{value} ne '' ? $c : undef;
}

sub page_text {
	my ($r) = @_;
	(my $b = body($r // '')) =~ s/\s+/ /g;
	return $b;
}

###############################################################################

# the provider itself

my $disc = web('GET', "$ISSUER/.well-known/openid-configuration");
like($disc, qr/"issuer":"\Q$ISSUER\E"/, 'provider: discovery names the issuer');

# alice, client_secret_basic: every hop

my $s = sign_in(provider => 'basic', user => 'alice');

is(status($s->{protected}), 302, 'basic: anonymous navigation to the site: 302');
is(header($s->{protected}, 'Location'), "$LOGIN?rd=" . url_encode($PAGE),
	'basic: to the login URL with rd = the page');
is(status($s->{login_page}), 200, 'basic: login page 200');
my @signin = grep { $_->{text} =~ /^Sign in with / } links(body($s->{login_page}));
is(join(', ', map { $_->{text} } @signin), 'Sign in with Basic, Sign in with Post',
	'login page offers both providers');
is(url_params($s->{link}{href} // '')->{rd}, $PAGE, 'login link carries rd');

is(status($s->{start}), 302, 'basic: ?provider=basic: 302');
my $authz = $s->{authorize_url} // '';
like($authz, qr{^\Q$ISSUER\E/auth\?}, 'basic: to the authorization endpoint from discovery');
my $q = url_params($authz);
is(join(' ', map { "$_=" . ($q->{$_} // '(none)') } qw/ response_type client_id redirect_uri
	code_challenge_method /),
	"response_type=code client_id=gpt-basic redirect_uri=$CALLBACK code_challenge_method=S256",
	'basic: authorization request parameters');
like($q->{scope} // '', qr/^(?=.*\bopenid\b)(?=.*\bemail\b)/, 'basic: scope openid email');
ok(($q->{state} // '') =~ /^[A-Za-z0-9_-]{22}$/ && length($q->{nonce} // '') >= 16
	&& ($q->{code_challenge} // '') =~ /^[A-Za-z0-9_-]{43}$/,
	'basic: state, nonce and PKCE challenge present');

my $sc = set_cookies($s->{start} // '');
my $state_name = 'gpt_auth_state_' . ($s->{sid} // '');
my $st = $sc->{$state_name};
ok($st && $st->{value} =~ /^s1\./, 'basic: login state cookie named after the state');
is(join(' ', map { "$_=" . ($st->{attrs}{$_} // '-') } qw/ path httponly samesite secure domain /),
	'path=/ httponly=1 samesite=Lax secure=- domain=-',
	'basic: state cookie attributes');

ok($s->{op}{form_seen}, 'basic: the provider showed its login form');
my $cb = $s->{callback_url} // '';
like($cb, qr{^\Q$CALLBACK\E\?}, 'basic: provider redirects to the callback');
my $cq = url_params($cb);
ok(length($cq->{code} // ''), 'basic: callback has a code');
is($cq->{state}, $s->{sid}, 'basic: callback state is ours');
is($cq->{iss}, $ISSUER, 'basic: callback iss is the issuer (RFC 9207)');
like($s->{callback_cookie} // '', qr/\Q$state_name\E=/, 'basic: the state cookie goes with it');

is(status($s->{callback}), 302, 'basic: callback 302') or trail($s);
is(header($s->{callback}, 'Location'), $PAGE, 'basic: callback returns to rd');
my $sess = session_set_cookie($s->{callback});
ok($sess, 'basic: callback sets the session cookie');
is(join(' ', map { "$_=" . ($sess->{attrs}{$_} // '-') }
	qw/ path max-age httponly samesite secure domain /),
	'path=/ max-age=604800 httponly=1 samesite=Lax secure=- domain=-',
	'basic: session cookie attributes');
is(scalar $s->{jar}->get($state_name), 0, 'basic: state cookie cleared by the callback');

is(status($s->{back}), 200, 'basic: protected page 200 after the login') or trail($s);
like(body($s->{back}), qr/protected page of the gpt site/, 'basic: protected content');
is(header($s->{back}, 'X-User'), 'alice@corp.test', 'basic: $gpt_auth_email is alice');

# the same answer again: the code is single-use at the provider

my $r = web('GET', $cb, accept => $HTML, cookie => $s->{callback_cookie});
is(status($r), 400, 'replayed callback with its state cookie: 400');
like(page_text($r), qr/Sign-in expired/, 'replayed callback: sign-in expired page');
ok(!session_set_cookie($r), 'replayed callback: no session cookie');
$r = web('GET', $cb, accept => $HTML, jar => $s->{jar});
is(status($r), 400, 'replayed callback in the same browser (state cookie gone): 400');

# logout, then single sign-on at the provider brings alice back without the form

my $jar = $s->{jar};
$r = web('GET', $LOGOUT, jar => $jar, accept => $HTML);
is(status($r), 302, 'logout: 302');
is(header($r, 'Location'), $LOGIN, 'logout: to the login page');
my $clear = set_cookies($r)->{gpt_auth};
ok($clear && $clear->{value} eq '' && ($clear->{attrs}{'max-age'} // '') eq '0',
	'logout: clears the session cookie');
is(status(web('GET', $PAGE, jar => $jar, accept => $HTML)), 302,
	'after logout: protected page 302 again');

$s = sign_in(provider => 'basic', user => 'alice', jar => $jar);
ok(!$s->{op}{form_seen} && defined $s->{callback_url},
	'sign in again: the provider session answers without the form') or trail($s);
is(status($s->{back}), 200, 'sign in again: protected page 200') or trail($s);

# alice, client_secret_post

$s = sign_in(provider => 'post', user => 'alice');
$q = url_params($s->{authorize_url} // '');
is($q->{client_id}, 'gpt-post', 'post: authorization request for the post client');
like($q->{scope} // '', qr/^openid email profile$/, 'post: configured scope');
ok($s->{op}{form_seen}, 'post: the provider showed its login form');
is(url_params($s->{callback_url} // '')->{iss}, $ISSUER, 'post: callback iss');
is(status($s->{callback}), 302, 'post: callback 302') or trail($s);
is(header($s->{callback}, 'Location'), $PAGE, 'post: callback returns to rd');
ok(session_set_cookie($s->{callback}), 'post: session cookie set');
is(status($s->{back}), 200, 'post: protected page 200') or trail($s);
is(header($s->{back}, 'X-User'), 'alice@corp.test', 'post: $gpt_auth_email is alice');

# a user the provider knows but the login site does not allow

$s = sign_in(provider => 'basic', user => 'mallory');
is(status($s->{callback}), 403, 'not allowed: callback 403') or trail($s);
like(page_text($s->{callback}), qr{You are signed in as <b>mallory\@evil\.test</b>},
	'not allowed: page names the user');
ok(!session_set_cookie($s->{callback}), 'not allowed: no session cookie');
is(scalar $s->{jar}->get('gpt_auth'), 0, 'not allowed: the browser has no session');
my %l = map { $_->{text} => $_->{href} } links(body($s->{callback}));
is($l{'Sign out'}, $LOGOUT, 'not allowed: "Sign out" links to the logout URL');
my $again = $l{'Sign in with another account'};
ok($again, 'not allowed: "Sign in with another account" link');
is(status(web('GET', $PAGE, jar => $s->{jar}, accept => $HTML)), 302,
	'not allowed: protected page still 302 to the login');

$r = web('GET', resolve_url($CALLBACK, $l{'Sign out'} // '/logout'), jar => $s->{jar},
	accept => $HTML);
is(header($r, 'Location'), $LOGIN, 'not allowed: "Sign out" ends on the login page');

# "Sign in with another account": the provider asks again (prompt=login: oidc-provider does not
# support select_account), and alice gets in. The user has signed out at the provider first:
# our logout ends only our session, and with mallory's provider session still alive,
# oidc-provider would end it through a page submitted by script, which only a browser follows.

$s->{jar}->forget(qr/^_session/);
my $other = { jar => $s->{jar}, trail => [] };
$r = web('GET', resolve_url($CALLBACK, $again // '/login'), jar => $other->{jar}, accept => $HTML);
push @{ $other->{trail} }, status($r) . " GET $again";
my $to = location_of($r, resolve_url($CALLBACK, $again // '/login'));
like($to // '', qr{^\Q$ISSUER\E/auth\?.*&prompt=login(&|$)},
	'another account: to the provider, with prompt=login');
$other->{op} = provider_sign_in($other->{jar}, $to // "$ISSUER/", email => 'alice@corp.test',
	password => 'alice-pw');
push @{ $other->{trail} }, @{ $other->{op}{trail} };
ok($other->{op}{form_seen}, 'another account: the provider asks for credentials again') or trail($other);
$r = $other->{op}{url} ? web('GET', $other->{op}{url}, jar => $other->{jar}, accept => $HTML) : '';
push @{ $other->{trail} }, status($r) . ' GET ' . ($other->{op}{url} // '(none)');
is(header($r, 'Location'), $PAGE, 'another account: alice signed in, back to the page')
	or trail($other);

# unverified email: the ID token is refused

$s = sign_in(provider => 'post', user => 'eve');
is(status($s->{callback}), 403, 'unverified email: callback 403') or trail($s);
like(page_text($s->{callback}), qr/Sign-in refused.*has not verified the email address/,
	'unverified email: the page says why');
ok(!session_set_cookie($s->{callback}), 'unverified email: no session cookie');

# allowed at the login site, not on the protected site's allowlist

$s = sign_in(provider => 'post', user => 'bob');
ok(session_set_cookie($s->{callback}), 'bob: signed in at the login site') or trail($s);
is(status($s->{back}), 403, 'bob: protected page 403') or trail($s);
like(page_text($s->{back}), qr{You are signed in as <b>bob\@corp\.test</b>},
	'bob: the 403 page names the user');
%l = map { $_->{text} => $_->{href} } links(body($s->{back}));
is($l{'Sign out'}, $LOGOUT, 'bob: the 403 page offers "Sign out"');

# Cancel at the provider

$s = sign_in(provider => 'post', user => 'alice', cancel => 1);
is(url_params($s->{callback_url} // '')->{error}, 'access_denied',
	'cancel: the provider answers error=access_denied');
is(status($s->{callback}), 403, 'cancel: callback 403') or trail($s);
like(page_text($s->{callback}), qr/Sign-in cancelled/, 'cancel: sign-in cancelled page');
ok(!session_set_cookie($s->{callback}), 'cancel: no session cookie');

###############################################################################

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\[info\].*gpt_auth: login: "alice\@corp\.test" signed in via provider "basic"/,
	'log: alice signed in via basic');
like($log, qr/\[info\].*gpt_auth: login: "alice\@corp\.test" signed in via provider "post"/,
	'log: alice signed in via post');
like($log, qr/gpt_auth: login refused: provider "basic": code rejected: invalid_grant/,
	'log: the replayed code');
like($log, qr/gpt_auth: login refused: "mallory\@evil\.test" \(provider "basic"\) is not on the allowlist "[^"]*auth\.allow"/,
	'log: mallory refused at the login');
like($log, qr/gpt_auth: login refused: provider "post": ID token email address not verified/,
	'log: eve refused');
like($log, qr/gpt_auth: access refused: "bob\@corp\.test" is not on the allowlist "[^"]*site\.allow"/,
	'log: bob refused at the site');
like($log, qr/gpt_auth: login refused by the provider: "access_denied"/, 'log: cancel');
is(join("\n", grep { /\[(?:error|crit)\]/ } split /\n/, $log), '', 'log: no errors');

my $oplog = $t->read_file('oidc.log');
is(join("\n", grep { /server_error|registered for|token endpoint error|interaction error/ }
	split /\n/, $oplog), '', 'provider log: no server errors, no client auth refusals');

###############################################################################
