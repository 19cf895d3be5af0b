#!/usr/bin/perl

# gpt_auth: `nginx -s reload` under load. Forked clients request a protected location in a
# loop (two worker processes) with a session signed by key A, while the test reloads nginx
# four times: a new key added in front (B signs) and a new allowlist; a new key file at
# another path (C, B, A) and an allowlist at another path; key B removed; an unchanged
# configuration. Not one client request may fail: a cookie signed with a key still in the
# file stays valid across every reload. After each reload the new keys and lists are in
# force.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use Hardening;

use Time::HiRes qw/ sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

# thousands of requests: no [debug] lines (they would make the log huge and slow to check)
my $globals = $t->test_globals();
$globals =~ s/(error_log\s+\S+)\s+debug\s*;/$1 info;/;

my $conf = <<"EOF";

$globals

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/%%KEYS%%;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Pid \$pid always;

        location / {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/%%LIST%%;
        }
    }
}

EOF

my sub write_conf {
	my ($keys, $list) = @_;
	$t->write_file_expand('nginx.conf', $conf =~ s/%%KEYS%%/$keys/r =~ s/%%LIST%%/$list/r);
}

# key files and lists are replaced atomically, as a deployment tool would
my sub write_atomic {
	my ($name, $content, $mode) = @_;
	$t->write_file("$name.new", $content);
	chmod $mode // 0644, $t->testdir() . "/$name.new";
	rename($t->testdir() . "/$name.new", $t->testdir() . "/$name") or die "rename: $!";
}

my sub write_keys {
	my ($name, @keys) = @_;
	write_atomic($name, join('', map { key_line($_) . "\n" } @keys), 0600);
}

my ($ka, $kb, $kc) = (new_key_bytes(), new_key_bytes(), new_key_bytes());
write_keys('keys', $ka);
$t->write_file('first.allow', "alice\@example.com\nbob\@example.com\n");
$t->write_file('index.html', 'protected page');
write_conf('keys', 'first.allow');

$t->run()->plan(19);

###############################################################################

sub cookie {
	my ($key, $email) = @_;
	return 'gpt_auth=' . mint_cookie(key => $key, email => $email // 'alice@example.com');
}

# "status status ..." of 4 requests, collapsed to one value when they agree
sub code {
	my ($key, $email) = @_;
	my @s = map { status(request('/', cookie => cookie($key, $email))) } 1 .. 4;
	my %u = map { $_ => 1 } @s;
	return keys(%u) == 1 ? $s[0] : "@s";
}

sub pids {
	my %p = map { (header(request('/', cookie => cookie($ka)), 'X-Pid') // '-') => 1 } 1 .. 20;
	return join(',', sort keys %p);
}

is(code($ka), 200, 'key A: 200');
is(code($kb), 401, 'key B not in the file yet: 401');
my $pids0 = pids();

my $load = load_start($t, clients => 4, requests => [
	{ uri => '/', cookie => cookie($ka), expect_body => qr/protected page/ },
	{ uri => '/index.html', cookie => cookie($ka, 'Alice@Example.com') },
]);
sleep(1);

# 1: a new signing key in front of A, a new allowlist at the same path

write_keys('keys', $kb, $ka);
write_atomic('first.allow', "alice\@example.com\ncarol\@example.com\n");
reload_and_wait($t);
isnt(pids(), $pids0, 'reload 1: new worker processes');
is(code($kb) . ' ' . code($ka), '200 200', 'reload 1: the new key B and the old key A verify');
is(code($ka, 'carol@example.com') . ' ' . code($ka, 'bob@example.com'), '200 403',
	'reload 1: the new allowlist is in force');
sleep(1);

# 2: another key file and another allowlist file

write_keys('keys2', $kc, $kb, $ka);
$t->write_file('second.allow', "alice\@example.com\ndave\@example.com\n");
write_conf('keys2', 'second.allow');
reload_and_wait($t);
is(code($kc) . ' ' . code($kb) . ' ' . code($ka), '200 200 200',
	'reload 2: keys C, B and A from the new key file');
is(code($ka, 'dave@example.com') . ' ' . code($ka, 'carol@example.com'), '200 403',
	'reload 2: the allowlist at the new path');
sleep(1);

# 3: key B retired

write_keys('keys2', $kc, $ka);
reload_and_wait($t);
is(code($kb) . ' ' . code($kc) . ' ' . code($ka), '401 200 200',
	'reload 3: B refused; C and A still verify');
sleep(1);

# 4: nothing changed

my $pids3 = pids();
reload_and_wait($t);
isnt(pids(), $pids3, 'reload 4: new worker processes');
sleep(1);

my $res = load_stop($load);
ok($res->{total} >= 500, "load: $res->{total} requests in "
	. sprintf('%.1f', $res->{seconds}) . 's, across 4 reloads');
is(join("\n", @{ $res->{bad} }), '', 'load: not one failed request (the cookie signed with A)');
is($res->{ok}, $res->{total}, 'load: every answer 200 with the page');

# after the load, the same

is(code($ka), 200, 'after the load: A still verifies');
is(code($kb), 401, 'after the load: B refused');
is(code($ka, 'bob@example.com'), 403, 'after the load: bob not on the list');

$t->stop();
my $log = $t->read_file('error.log');
my @reloads = $log =~ /\[notice\].*signal 1 \(SIGHUP\) received/g;
is(scalar @reloads, 4, 'four reloads');
unlike($log, qr/\[emerg\]/, 'no reload failed');
is(join("\n", crash_lines($log)), '', 'no worker crashed');
unlike($log, qr/\[(error|crit)\]/, 'no [error] or [crit] line at all');

###############################################################################
