#!/usr/bin/perl

# gpt_auth: the return address (rd) of a login or logout cannot be used as an open redirect.
# Every vector of the issue and more (protocol-relative and backslash paths, other hosts,
# lookalike suffixes, userinfo, script schemes, whitespace, control characters and NUL, raw or
# percent-encoded, encoded separators, non-ASCII and encoded hosts, IP addresses, overlong
# values) ends on gpt_auth_default_return_url, through all three ways in (the login page's
# buttons, the state cookie of a login, the logout redirect), with one log line each; allowed
# hosts (the cookie domain and its subdomains, gpt_auth_return_hosts entries, the login site's
# own host) and local paths are kept unchanged. No response reflects a CR or LF into a header.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use LoginFlow;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

# The provider's endpoints are configured, so starting a login fetches nothing: no provider
# is needed to see where a login would return to.

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_cookie_secure off;
    gpt_auth_cookie_domain .example.test;
    gpt_auth_login_url http://auth.example.test/login;

    gpt_auth_provider corp {
        issuer https://idp.example.net;
        client_id corp-client;
        client_secret_file %%TESTDIR%%/secret;
        authorization_endpoint https://idp.example.net/authorize;
        token_endpoint https://idp.example.net/token;
        jwks_uri https://idp.example.net/jwks;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  login.internal auth.example.test;

        gpt_auth_return_hosts app.other.test .partner.test 10.1.2.3 [::1];
        gpt_auth_default_return_url https://www.example.test/home;

        # The callback's token exchange would fetch through it (never reached here).
        location = /_gpt_auth_fetch {
            internal;
            proxy_pass $gpt_auth_fetch_url;
        }

        location = /login {
            gpt_auth_login corp;
        }

        location = /logout {
            gpt_auth_logout;
        }

        location = /login-plain {
            gpt_auth_login corp;
            gpt_auth_return_hosts off.invalid;
            gpt_auth_default_return_url /;
        }

        location = /logout-var {
            gpt_auth_logout;
            gpt_auth_login_url http://auth.example.test/login?from=$arg_from;
        }

        location = /callback {
            gpt_auth_callback;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('secret', "s3cret\n");

my @refused = (
	'//evil.com',
	'//evil.com/path',
	'///evil.com',
	'////evil.com',
	'/\\evil.com',
	'/\\/evil.com',
	'\\/evil.com',
	'\\\\evil.com',
	'https://evil.com',
	'http://evil.com/',
	'https://evil.com/https://www.example.test/',
	'https://example.test.evil.com/',
	'https://www.example.test.evil.com/chat',
	'https://evilexample.test/',
	'https://example.test@evil.com/',
	'https://www.example.test:443@evil.com/',
	'https://evil.com\\@www.example.test/',
	'https://evil.com#.example.test',
	'https://evil.com?.example.test',
	'https://evil.com/.example.test',
	'https://evil.com%2F@www.example.test/',
	'https://app.other.test.evil.com/',
	'https://xapp.other.test/',
	'https://other.test/',
	'https://partner.test.evil.com/',
	# lookalikes of the gpt_auth_return_hosts entries: a suffix match must stop at a dot
	'https://evilpartner.test/',
	'https://sub.evilpartner.test/',
	'https://apartner.test:8443/',
	'https://app.other.testx/',
	'https://evilapp.other.test/',
	'https://10.1.2.33/',
	'https://110.1.2.3/',
	'http://[::11]/',
	'javascript:alert(1)',
	'JavaScript:alert(document.cookie)//https://www.example.test/',
	'javascript://www.example.test/%0aalert(1)',
	'data:text/html,<script>alert(1)</script>',
	'vbscript:msgbox(1)',
	'https:evil.com',
	'https:/evil.com',
	'https:\\\\evil.com',
	'ftp://www.example.test/',
	'//www.example.test/',
	"/\t/evil.com",
	"https://www.example.test/\t",
	"/\n/evil.com",
	"https://www.example.test/\r\nSet-Cookie: x=1",
	"/a\0b",
	"https://www.example.test\0.evil.com/",
	' https://www.example.test/',
	'/%09/evil.com',
	'/%0d%0a/evil.com',
	'https://www.example.test/%0d%0aX-Injected:%201',
	'https://www.example.test/%00',
	'/%7f',
	'/%2F/evil.com',
	'/%2f%2fevil.com',
	'/%5Cevil.com',
	'/%5c%5cevil.com',
	'/%2e%2e//evil.com',
	'/.//evil.com',
	'%2F%2Fevil.com',
	'%2f%5cevil.com',
	'https%3A%2F%2Fevil.com',
	"https://www.ex\x{430}mple.test/",
	'https://ex%61mple.test/',
	'https://127.0.0.1/',
	'https://2130706433/',
	'https://0x7f.1/',
	'http://[::2]/',
	'https://www.example.test:99999/',
	'https://www.example.test/<script>',
	'https://www.example.test/"onmouseover=x',
	'https://.example.test/',
	'https://www.example.test/' . ('a' x 1100),
);

my @allowed = (
	'https://gpt4.example.test/chat?q=1&x=%2F',
	'https://example.test/',
	'http://a.b.example.test:8443/p#frag',
	'HTTPS://GPT4.EXAMPLE.TEST/Upper',
	'https://app.other.test/x',
	'https://app.other.test:9443/x?y=1',
	'https://deep.sub.partner.test/',
	'https://partner.test/',
	'http://10.1.2.3/',
	'http://[::1]:8080/',
	'http://auth.example.test/own',
	'/relative/path?x=1',
	'/',
	'/path%20with%20spaces',
	'/search?q=a//b&r=https://evil.com',
	"/p?a=1&b='2'",
);

$t->run()->plan(@refused + @allowed + 16);

###############################################################################

my $DEFAULT = 'https://www.example.test/home';

sub enc {
	my ($s) = @_;
	utf8::encode($s) if utf8::is_utf8($s);
	return urlencode($s);
}

# Where each of the three ways in would send the browser for this rd, and how many
# "return address refused" lines were logged:
# "page=<rd of the buttons> state=<return_url of a login> logout=<Location> refused=<n>"
my sub outcome {
	my ($rd, %a) = @_;
	my $host = $a{host} // 'auth.example.test';
	my $mark = log_offset($t);

	my $r = request('/login?rd=' . enc($rd), host => $host);
	my ($page) = body($r) =~ m{<a class="button" href="\?provider=corp&amp;rd=([^"]*)">};
	$page = defined $page ? urldecode($page) : '(no button, status ' . status($r) . ')';

	my $bytes = $rd;
	utf8::encode($bytes) if utf8::is_utf8($bytes);
	my $l = start_login($key, provider => 'corp', rd => $bytes, host => $host);
	my $state = $l->{state} ? $l->{state}{return_url} : '(no state cookie)';

	$r = request('/logout?rd=' . enc($rd), host => $host);
	my $logout = header($r, 'Location') // '(no Location)';

	my $n = () = log_since($t, $mark) =~ /\[info\].*gpt_auth: return address refused: "/g;
	return "page=$page state=$state logout=$logout refused=$n";
}

sub show {
	my ($s) = @_;
	$s =~ s/([^\x20-\x7e])/sprintf('\\x{%x}', ord $1)/ge;
	return length($s) > 70 ? substr($s, 0, 70) . '...' : $s;
}

for my $rd (@refused) {
	is(outcome($rd), "page=$DEFAULT state=$DEFAULT logout=$DEFAULT refused=3",
		'refused: ' . show($rd));
}

# nginx itself makes a Location with a path absolute (absolute_redirect)
my $SELF = 'http://auth.example.test:' . port(8080);

for my $rd (@allowed) {
	my $loc = $rd =~ m{^/} ? "$SELF$rd" : $rd;
	is(outcome($rd), "page=$rd state=$rd logout=$loc refused=0", 'kept: ' . show($rd));
}

# the login site's own host (its first server_name), outside the cookie domain, whatever
# Host header the request carries

is(outcome('https://login.internal/after', host => 'auth.example.test'),
	'page=https://login.internal/after state=https://login.internal/after '
	. 'logout=https://login.internal/after refused=0', 'kept: the login site\'s own host');
is(outcome('https://login.internal.evil.com/', host => 'login.internal'),
	"page=$DEFAULT state=$DEFAULT logout=$DEFAULT refused=3",
	'refused: a lookalike of the own host');
is(outcome('https://evil.com/x', host => 'evil.com'),
	"page=$DEFAULT state=$DEFAULT logout=$DEFAULT refused=3",
	'refused: a Host header does not make its host "own host"');

# the log line

my $mark = log_offset($t);
request('/login?rd=' . enc("https://evil.com/\r\nx"), host => 'auth.example.test');
like(log_since($t, $mark),
	qr/\[info\].*gpt_auth: return address refused: "https:\/\/evil\.com\/\?\?x"/,
	'refusal logged, control characters replaced');

# no default configured: "/"

my $r = request('/login-plain?rd=' . enc('//evil.com'), host => 'auth.example.test');
like(body($r), qr{href="\?provider=corp&amp;rd=%2F"}, 'without a default: back to /');

# the session is not needed to be redirected away on logout

$r = request('/logout', host => 'auth.example.test');
is(header($r, 'Location'), 'http://auth.example.test/login', 'logout without rd: login URL');

# no header injection, whatever carries the CR LF

my @crlf = (
	'/login?rd=%0d%0aX-Injected:%201',
	'/login?rd=https://www.example.test/%0d%0aX-Injected:%201',
	'/login?provider=corp&rd=%0d%0aX-Injected:%201',
	'/login?provider=corp%0d%0aX-Injected:%201',
	'/logout?rd=%0d%0aX-Injected:%201',
	'/logout?rd=/%0d%0aX-Injected:%201',
	'/logout-var?from=%0d%0aX-Injected:%201',
	'/callback?state=%0d%0aX-Injected:%201&code=1',
	'/callback?error=%0d%0aX-Injected:%201&error_description=%0d%0aX-Injected:%202',
	'/callback?code=%0d%0aX-Injected:%201&state=AAAAAAAAAAAAAAAAAAAAAA',
	'/login?rd=%E5%98%8A%E5%98%8DX-Injected:%201',
);
my @bad;
for my $uri (@crlf) {
	my $r = request($uri, host => 'auth.example.test');
	my ($head) = split /\r\n\r\n/, $r, 2;
	push @bad, "$uri: no response" unless status($r);
	push @bad, "$uri: injected header" if ($head // '') =~ /^X-Injected/mi;
	push @bad, "$uri: bare CR or LF in the header" if ($head // '') =~ /\r(?!\n)|(?<!\r)\n/;
}
is(join("\n", @bad), '', 'no CR/LF from the request reaches a response header ('
	. scalar(@crlf) . ' requests)');

$r = request('/logout-var?from=%0d%0aX-Injected:%201', host => 'auth.example.test');
is(header($r, 'Location'), 'http://auth.example.test/login?from=%0d%0aX-Injected:%201',
	'login URL with variables: the encoded value stays encoded');

# the state cookie carries what the login page showed

my $l = start_login($key, provider => 'corp', rd => 'https://gpt4.example.test/a?b=c&d=%2F');
is($l->{state}{return_url}, 'https://gpt4.example.test/a?b=c&d=%2F',
	'state cookie keeps rd byte for byte');
like($l->{location}, qr{^https://idp\.example\.net/authorize\?response_type=code&},
	'configured authorization_endpoint: no fetch needed');

# overlong but allowed host: refused (it would not fit the state cookie)

my $long = 'https://gpt4.example.test/' . ('b' x 1000);
is(outcome($long), "page=$DEFAULT state=$DEFAULT logout=$DEFAULT refused=3",
	'refused: allowed host, longer than 1024 bytes');
my $fits = 'https://gpt4.example.test/' . ('b' x 990);
is(outcome($fits), "page=$fits state=$fits logout=$fits refused=0",
	'kept: allowed host, just under 1024 bytes');

# the callback sends the browser where the state cookie says, and nowhere else

my $forged = state_encode($key, $l->{cookie_name}, { %{ $l->{state} } });
is($forged, $l->{cookie_value}, 'the suite re-creates the module\'s state cookie byte for byte');

# rd given twice: the first one counts

is(outcome('https://gpt4.example.test/first') =~ /^page=(\S+)/ ? $1 : '',
	'https://gpt4.example.test/first', 'sanity: single rd');
$r = request('/login?rd=' . enc('//evil.com') . '&rd=' . enc('https://gpt4.example.test/x'),
	host => 'auth.example.test');
like(body($r), qr{rd=https%3A%2F%2Fwww\.example\.test%2Fhome"}, 'rd twice: the first one counts (refused)');
$r = request('/login?rd=' . enc('https://gpt4.example.test/x') . '&rd=' . enc('//evil.com'),
	host => 'auth.example.test');
like(body($r), qr{rd=https%3A%2F%2Fgpt4\.example\.test%2Fx"}, 'rd twice: the first one counts (kept)');

###############################################################################
