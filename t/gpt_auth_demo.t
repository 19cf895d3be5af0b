#!/usr/bin/perl

# gpt_auth: the demo of `make run` (tools/run-demo.sh): it starts on the ports it is given,
# answers like the README says (the login, and the AI API behind /v1/ with the mock provider:
# model rules, the filtered model list, metering), and SIGTERM stops all of it (nginx, the
# OpenID provider and the AI provider).

###############################################################################

use warnings;
use strict;

use Test::More;
use IO::Socket::INET;
use File::Temp qw/ tempdir /;
use POSIX qw/ WNOHANG /;
use JSON::PP;

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

sub post_json {
	my ($port, $path, $json, @headers) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or return '';
	print $s "POST $path HTTP/1.0\r\nHost: 127.0.0.1:$port\r\n",
		"Content-Type: application/json\r\nContent-Length: " . length($json) . "\r\n",
		map({ "$_\r\n" } @headers), "\r\n", $json;
	local $/;
	my $r = <$s> // '';
	return $r;
}

sub body_json {
	my ($r) = @_;
	my (undef, $body) = split(/\r\n\r\n/, $r, 2);
	return eval { decode_json($body // '') } // {};
}

sub slurp {
	my ($f) = @_;
	open(my $fh, '<', $f) or return '';
	local $/;
	return <$fh> // '';
}

# The access log line of a request, once nginx has written it.
sub log_line {
	my ($re) = @_;
	for (1 .. 50) {
		my ($l) = grep { $_ =~ $re } split(/\n/, slurp("$main::dir/demo/access.log"));
		return $l if defined $l;
		select(undef, undef, undef, 0.1);
	}
	return '';
}

plan(tests => 23);

my ($port, $idp, $ai) = (free_port(), free_port(), free_port());
our $dir = tempdir(CLEANUP => 1);
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
	setpgrp(0, 0);
	open(STDOUT, '>', "$dir/out.log");
	open(STDERR, '>&', \*STDOUT);
	$ENV{DEMO_PORT} = $port;
	$ENV{DEMO_IDP_PORT} = $idp;
	$ENV{DEMO_AI_PORT} = $ai;
	$ENV{DEMO_DIR} = "$dir/demo";
	exec("$FindBin::Bin/../tools/run-demo.sh", $nginx, $module, $cli) or exit 127;
}

my $up = 0;
for (1 .. 150) {
	if (listening($port) && listening($idp) && listening($ai)) { $up = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($up, "demo listening on the chosen ports ($port, provider $idp, AI provider $ai)")
	or diag(`cat $dir/out.log`);

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

# The AI features: the chat page, the model rules, the filtered list, metering.

my $bob = `$cli mint -k $dir/demo/demo.keys -e bob\@example.com --pair`;
chomp $bob;
$r = get($port, '/chat.html', "Cookie: $cookie", 'Accept: text/html');
like($r, qr{^HTTP/1\.\d 200.*/v1/chat/completions}s, 'the chat page is served to a signed-in user');
like(get($port, '/chat.html', 'Accept: text/html'), qr{^HTTP/1\.\d 302}, '... and not without a session');

my @ids = map { $_->{id} } @{body_json(get($port, '/v1/models', "Cookie: $bob"))->{data} // []};
is("@ids", 'gpt-4o-mini', 'GET /v1/models for bob: only gpt-4o-mini');
@ids = map { $_->{id} } @{body_json(get($port, '/v1/models', "Cookie: $cookie"))->{data} // []};
ok((grep { $_ eq 'gpt-4o' } @ids) && (grep { $_ eq 'gpt-4o-mini' } @ids),
	'GET /v1/models for alice: gpt-4o and gpt-4o-mini') or diag("@ids");

my $hello = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}';
$r = post_json($port, '/v1/chat/completions', $hello, "Cookie: $bob");
like($r, qr{^HTTP/1\.\d 403}, 'bob asks for gpt-4o: 403');
my $e = body_json($r)->{error} // {};
ok(($e->{type} // '') eq 'permission_error' && ($e->{message} // '') =~ /"gpt-4o"/,
	'... with an OpenAI error body naming the model') or diag($r);

# "Hello" is 5 bytes: 2 input tokens for the mock; its answers have 50 output tokens:
# 2 x 2.50 + 50 x 10 USD per million = 0.000505 USD.
$r = post_json($port, '/v1/chat/completions', $hello, "Cookie: $cookie");
like($r, qr{^HTTP/1\.\d 200}, 'alice asks for gpt-4o: 200');
my $u = body_json($r)->{usage} // {};
is(join(',', map { $_ // '' } @$u{qw/ prompt_tokens completion_tokens /}), '2,50',
	'... with the usage') or diag($r);
like(log_line(qr{"POST /v1/chat/completions HTTP/1\.0" 200 user="alice\@example\.com"}),
	qr{ model=gpt-4o input_tokens=2 output_tokens=50 cost=0\.000505 usage=reported$},
	'the access log line has the model, tokens and cost');

# What the chat page sends: a stream (the module asks for the usage and cuts it out again).
(my $stream = $hello) =~ s/"gpt-4o"/"gpt-4o-mini", "stream": true/;
$r = post_json($port, '/v1/chat/completions', $stream, "Cookie: $bob", 'X-Mock-Events: 3');
like($r, qr{^HTTP/1\.\d 200.*text/event-stream.*"delta":\{"content":.*data: \[DONE\]}s,
	'bob streams from gpt-4o-mini');
# 2 x 0.15 + 3 x 0.60 USD per million: 0.0000021, shown to 6 decimals
like(log_line(qr{"POST /v1/chat/completions HTTP/1\.0" 200 user="bob\@example\.com"}),
	qr{ model=gpt-4o-mini input_tokens=2 output_tokens=3 cost=0\.000002 usage=reported$},
	'... metered from the stream');

like(get($ai, '/_mock/log'), qr{"model": "gpt-4o-mini"}, 'the mock provider on its chosen port answered');
like(get($port, '/usage?format=json', "Cookie: $cookie"),
	qr{"email":"alice\@example\.com","models":\[\{"day":\{"cost":"0\.000505","input_tokens":2,"output_tokens":50},
	'/usage: alice\'s tokens and cost');

kill 'TERM', $pid;
my $gone = 0;
for (1 .. 100) {
	if (waitpid($pid, WNOHANG) == $pid) { $gone = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($gone, 'SIGTERM: the demo script ends');
my $quiet = 0;
for (1 .. 50) {
	if (!listening($port) && !listening($idp) && !listening($ai)) { $quiet = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($quiet, 'SIGTERM: nginx, the OpenID provider and the AI provider stopped');
my $out = slurp("$dir/out.log");
like($out, qr{gpt_auth demo: open http://127\.0\.0\.1:\Q$port\E/}, 'the banner names the port');
like($out, qr{AI provider .* runs on 127\.0\.0\.1:\Q$ai\E\.}, '... and the AI provider\'s');
kill 'KILL', -$pid if !$gone;

###############################################################################
