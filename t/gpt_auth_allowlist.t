#!/usr/bin/perl

# gpt_auth: allowlists. Addresses and domains, per server and location, case-insensitive;
# the 403 page; live re-read without reload, revocation of a signed-in user, and the last good
# list kept while the file is broken or missing.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use Time::HiRes qw/ sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Result "$gpt_auth_result" always;
        add_header X-User "$gpt_auth_email" always;

        gpt_auth_allowlist %%TESTDIR%%/company.allow;

        location / {
            gpt_auth on;
        }

        location /gpt4/ {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/gpt4.allow;
        }

        location /open/ {
            gpt_auth on;
            gpt_auth_allowlist off;
        }

        location /nobody/ {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/nobody.allow;
        }

        location /custom/ {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/gpt4.allow;
            error_page 403 /denied.html;
        }

        location = /denied.html {
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        location / {
            gpt_auth on;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . "/keys";
$t->write_file('company.allow', <<'EOF');
# the whole company, and one partner
@example.com
guest@partner.org   # until March
EOF
$t->write_file('gpt4.allow', "Alice\@Example.COM\n");
$t->write_file('nobody.allow', '');
$t->write_file('index.html', 'company page');
$t->write_file('denied.html', 'custom denied page');
mkdir($t->testdir() . "/$_") for qw/ gpt4 open custom /;
$t->write_file("$_/index.html", "$_ page") for qw/ gpt4 open custom /;

$t->run()->plan(40);

###############################################################################

sub get {
	my ($uri, $email, %extra) = @_;
	my $cookie = defined $email
		? 'gpt_auth=' . mint_cookie(key => $key, email => $email) : undef;
	return request($uri, cookie => $cookie, %extra);
}

sub code {
	return status(get(@_));
}

# by address and by domain, inherited from the server level

is(code('/', 'alice@example.com'), 200, 'domain entry admits an address of the domain');
is(code('/', 'guest@partner.org'), 200, 'address entry');
is(code('/', 'GUEST@Partner.ORG'), 200, 'matching is case-insensitive');
is(code('/', 'eve@evil.com'), 403, 'not on the list: 403');
is(code('/', 'x@sub.example.com'), 403, 'a domain entry does not cover subdomains');
is(code('/', 'x@example.com.evil.com'), 403, 'lookalike suffix: 403');
is(code('/', 'other@partner.org'), 403, 'another address of a listed address domain: 403');

# per location

is(code('/gpt4/', 'alice@example.com'), 200, 'stricter list admits its user (case differs)');
is(code('/gpt4/', 'bob@example.com'), 403, 'company user on the stricter list: 403');
is(code('/open/', 'eve@evil.com'), 200, 'gpt_auth_allowlist off: any valid session');
is(code('/', 'eve@evil.com', port => 8081), 200, 'no allowlist: any valid session');
is(code('/gpt4/', undef), 401, 'no cookie is still 401, not 403');

# the 403 page

my $r = get('/gpt4/', 'bob@example.com');
like(body($r), qr{signed in as <b>bob\@example\.com</b>}, '403 page says who is signed in');
is(header($r, 'Content-Type'), 'text/html; charset=utf-8', '403 page is html');
is(header($r, 'X-Result'), 'not_allowed', 'result not_allowed');
is(header($r, 'X-User'), undef, '$gpt_auth_email is empty when not allowed (add_header omits it)');

$r = get('/gpt4/', "<script>x\@example.com");
unlike(body($r), qr/<script>/, 'address is escaped in the 403 page');
like(body($r), qr/&lt;script&gt;x\@example\.com/, 'escaped address shown');

$r = get('/custom/', 'bob@example.com');
is(status($r), 403, 'error_page 403: still 403');
like(body($r), qr/custom denied page/, 'error_page 403 wins over the built-in page');

is(status(request('/gpt4/', method => 'HEAD',
	cookie => 'gpt_auth=' . mint_cookie(key => $key, email => 'bob@example.com'))), 403,
	'HEAD: 403');

# live re-read: atomic replace (new inode)

$t->write_file('gpt4.allow.new', "alice\@example.com\nbob\@example.com\n");
rename($t->testdir() . '/gpt4.allow.new', $t->testdir() . '/gpt4.allow') or die $!;
sleep(1.2);
is(code('/gpt4/', 'bob@example.com'), 200, 'added user admitted after the file changed');

# revocation: rewrite in place; a valid cookie no longer helps

$t->write_file('gpt4.allow', "bob\@example.com\n");
sleep(1.2);
is(code('/gpt4/', 'alice@example.com'), 403, 'removed user locked out on the next request');
is(code('/gpt4/', 'bob@example.com'), 200, 'remaining user still admitted');
is(code('/custom/', 'alice@example.com'), 403, 'every location using the file sees the change');

# broken file: last good list stays in force

$t->write_file('gpt4.allow', "bob\@example.com\nnot an entry\n");
sleep(1.2);
is(code('/gpt4/', 'bob@example.com'), 200, 'broken file: last good list kept (bob in)');
is(code('/gpt4/', 'alice@example.com'), 403, 'broken file: last good list kept (alice out)');

# fixed again

$t->write_file('gpt4.allow', "alice\@example.com\n");
sleep(1.2);
is(code('/gpt4/', 'alice@example.com'), 200, 'fixed file picked up');
is(code('/gpt4/', 'bob@example.com'), 403, 'fixed file picked up (bob out)');

# deleted: last good list stays

unlink($t->testdir() . '/gpt4.allow');
sleep(1.2);
is(code('/gpt4/', 'alice@example.com'), 200, 'deleted file: last good list kept');
is(code('/gpt4/', 'bob@example.com'), 403, 'deleted file: still refuses others');

$t->write_file('gpt4.allow', "bob\@example.com\n");
sleep(1.2);
is(code('/gpt4/', 'bob@example.com'), 200, 'recreated file picked up');

# the last user removed: a file of comments only (moved over the list) allows nobody

$t->write_file('gpt4.allow.new', "# nobody until further notice\n");
rename($t->testdir() . '/gpt4.allow.new', $t->testdir() . '/gpt4.allow') or die $!;
sleep(1.2);
is(code('/gpt4/', 'bob@example.com'), 403, 'the last user removed: refused');

# deny entries: one person locked out of a domain-wide list, on the next re-read

$t->write_file('gpt4.allow.new', "\@example.com\n!Bob\@Example.com  # left in June\n");
rename($t->testdir() . '/gpt4.allow.new', $t->testdir() . '/gpt4.allow') or die $!;
sleep(1.2);
is(code('/gpt4/', 'alice@example.com') . ' ' . code('/gpt4/', 'bob@example.com'), '200 403',
	'!bob@example.com in a list of @example.com: alice in, bob out');
$t->write_file('gpt4.allow.new', "# nobody until further notice\n");
rename($t->testdir() . '/gpt4.allow.new', $t->testdir() . '/gpt4.allow') or die $!;
sleep(1.2);

# a list that is 0 bytes at start allows nobody (there is no last good list to keep)

is(code('/nobody/', 'alice@example.com'), 403, 'a 0-byte list at start: nobody');

# what the error log says

$t->stop();
my $log = $t->read_file('error.log');

like($log, qr/\[info\].*gpt_auth: access refused: "bob\@example\.com" is not on the allowlist "[^"]*gpt4\.allow"/,
	'info line names the user and the list');
like($log, qr/\[notice\].*gpt_auth: allowlist "[^"]*gpt4\.allow" re-read: 2 entries \(was 1\)/,
	'notice on re-read');
like($log, qr/\[error\].*gpt_auth: allowlist "[^"]*gpt4\.allow": line 2: an entry must not contain spaces; keeping the last good list \(1 entries\)/,
	'error for a broken file names the line');
like($log, qr/\[error\].*gpt_auth: allowlist "[^"]*gpt4\.allow" \(2: No such file or directory\); keeping the last good list \(1 entries\)/,
	'error for a deleted file');
my @broken = ($log =~ /line 2: an entry must not contain spaces/g);
is(scalar @broken, 1, 'a broken file is reported once, not every second');

###############################################################################
