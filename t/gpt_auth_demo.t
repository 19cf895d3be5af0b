#!/usr/bin/perl

# gpt_auth: the demo of `make run` (tools/run-demo.sh): it starts on the ports it is given,
# answers like the README says, and SIGTERM stops all of it (nginx and the provider).

###############################################################################

use warnings;
use strict;

use Test::More;
use IO::Socket::INET;
use File::Temp qw/ tempdir /;
use POSIX qw/ WNOHANG /;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use GptAuth;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $nginx = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my ($module) = ($ENV{TEST_NGINX_GLOBALS} // '') =~ /load_module\s+(\S+);/;
$module //= "$FindBin::Bin/../build/ngx_http_gpt_auth_module.so";
my $cli = $ENV{GPT_AUTH_CLI} // "$FindBin::Bin/../target/release/gpt-auth";
-f "$FindBin::Bin/oidc/node_modules/oidc-provider/package.json"
	or BAIL_OUT('t/oidc/node_modules missing (tools/install-deps.sh test)');

sub free_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
		or die "no free port: $!";
	my $p = $s->sockport();
	close $s;
	return $p;
}

sub listening {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1);
	return defined $s;
}

sub get {
	my ($port, $path, @headers) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or return '';
	print $s "GET $path HTTP/1.0\r\nHost: 127.0.0.1:$port\r\n", map({ "$_\r\n" } @headers), "\r\n";
	local $/;
	my $r = <$s> // '';
	return $r;
}

plan(tests => 9);

my ($port, $idp) = (free_port(), free_port());
my $dir = tempdir(CLEANUP => 1);
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
	setpgrp(0, 0);
	open(STDOUT, '>', "$dir/out.log");
	open(STDERR, '>&', \*STDOUT);
	$ENV{DEMO_PORT} = $port;
	$ENV{DEMO_IDP_PORT} = $idp;
	$ENV{DEMO_DIR} = "$dir/demo";
	exec("$FindBin::Bin/../tools/run-demo.sh", $nginx, $module, $cli) or exit 127;
}

my $up = 0;
for (1 .. 150) {
	if (listening($port) && listening($idp)) { $up = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($up, "demo listening on the chosen ports ($port, provider $idp)") or diag(`cat $dir/out.log`);

my $r = get($port, '/api/whoami');
like($r, qr{^HTTP/1\.\d 401}, 'no session: 401');
$r = get($port, '/', 'Accept: text/html');
like($r, qr{^HTTP/1\.\d 302}, 'browser: 302');
like($r, qr{^Location: http://127\.0\.0\.1:\Q$port\E/login\?rd=}m, 'to the login page on the chosen port');
my $cookie = `$cli mint -k $dir/demo/demo.keys -e alice\@example.com --pair`;
chomp $cookie;
$r = get($port, '/api/whoami', "Cookie: $cookie");
like($r, qr{\{"user": "alice\@example\.com"\}}, 'minted session: the API answers with the user');
like(get($idp, '/.well-known/openid-configuration'), qr{"issuer":"http://127\.0\.0\.1:\Q$idp\E"},
	'the provider runs on its chosen port');

kill 'TERM', $pid;
my $gone = 0;
for (1 .. 100) {
	if (waitpid($pid, WNOHANG) == $pid) { $gone = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($gone, 'SIGTERM: the demo script ends');
my $quiet = 0;
for (1 .. 50) {
	if (!listening($port) && !listening($idp)) { $quiet = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($quiet, 'SIGTERM: nginx and the provider stopped');
like(`cat $dir/out.log`, qr{gpt_auth demo: open http://127\.0\.0\.1:\Q$port\E/}, 'the banner names the port');
kill 'KILL', -$pid if !$gone;

###############################################################################
