#!/usr/bin/perl

# gpt_auth: a quota zone shared through a Redis on TLS (gpt_auth_quota_redis ... ssl). A real
# Redis (Debian's redis-server, built with TLS) listens on a TLS port that requires client
# certificates, with certificates made by openssl for the test. Counts reach Redis over TLS
# with the server's certificate checked (by a name, by its IP address) and a client
# certificate; a server that is not trusted, a name that does not match, no client
# certificate and plain TCP to the TLS port each break the synchronisation with one [error]
# line saying why, and nothing reaches Redis; ssl_verify=off connects without checking. And
# `nginx -t` errors for the ssl parameters.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota;
use GptAuthRedis;
use Time::HiRes qw/ time sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);
my $dir = $t->testdir();
my ($rport, $tport) = (port(8090), port(8091));
my $password = 'pw-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 12);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=chat:1m;
    gpt_auth_quota_redis zone=chat password_file=%%TESTDIR%%/redis.pw prefix=t: node=a
                         interval=200ms timeout=500ms
                         %%REDIS%%;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
            gpt_auth on;
            gpt_auth_quota zone=chat day=100;
            proxy_pass http://127.0.0.1:8081;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  backend;

        location / {
            return 200 "ok\n";
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$t->write_file('redis.pw', "$password\n");
redis_tls_files($dir);

my $redis = redis_new(dir => $dir, port => $rport, password => $password, tls_port => $tport);

my $client = "ssl_certificate=$dir/redis-client.crt ssl_certificate_key=$dir/redis-client.key";
my $trusted = "ssl_trusted_certificate=$dir/redis-ca.crt";

# nginx -t: what the ssl parameters refuse

my @bad = (
	[ 'ssl', qr/ssl needs ssl_trusted_certificate=FILE to verify the server \(or ssl_verify=off\)/, 'ssl without trusted certificates' ],
	[ 'ssl_name=redis.test', qr/ssl_name= needs ssl/, 'an ssl parameter without ssl' ],
	[ "ssl ssl_verify=off $trusted", qr/ssl_trusted_certificate= has no use with ssl_verify=off/, 'trusted certificates not checked' ],
	[ 'ssl ssl_verify=maybe', qr/invalid ssl_verify "maybe": must be "on" or "off"/, 'bad ssl_verify' ],
	[ "ssl ssl_verify=off ssl_certificate=$dir/redis-client.crt", qr/ssl_certificate= needs ssl_certificate_key=/, 'certificate without key' ],
	[ "ssl ssl_verify=off ssl_certificate_key=$dir/redis-client.key", qr/ssl_certificate_key= needs ssl_certificate=/, 'key without certificate' ],
	[ 'ssl ssl_trusted_certificate=', qr/ssl_trusted_certificate= needs a value/, 'empty file name' ],
	[ "ssl ssl_trusted_certificate=$dir/none.crt", qr/ssl_trusted_certificate "[^"]*none\.crt" cannot be loaded/, 'trusted certificates missing' ],
	[ "ssl ssl_verify=off ssl_certificate=$dir/redis-client.crt ssl_certificate_key=$dir/redis-server.key", qr/ssl_certificate "[^"]*redis-client\.crt" or its key "[^"]*redis-server\.key" cannot be loaded/, 'key of another certificate' ],
	[ "server=unix:$dir/r.sock ssl $trusted", qr/ssl to a unix socket needs ssl_name=NAME/, 'unix socket without a name' ],
);

$t->plan(18 + @bad);

for my $b (@bad) {
	my ($params, $re, $what) = @$b;
	my $server = $params =~ /server=/ ? '' : "server=127.0.0.1:$tport";
	my ($ok, $out) = conf_test($t, 'bad.conf', <<"EOF");
%%TEST_GLOBALS%%
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    gpt_auth_quota_zone zone=chat:1m;
    gpt_auth_quota_redis zone=chat $server $params;
}
EOF
	ok(!$ok && $out =~ /\[emerg\].*"gpt_auth_quota_redis" directive $re/, "nginx -t: $what")
		or diag($out);
}

###############################################################################

$redis->start();
my $p = periods(time());

# Starts node A with these Redis parameters, sends `n` requests as `who`, waits for rounds;
# returns (Redis's day total of `who`, what node A logged meanwhile).
my sub counted {
	my ($params, $who, $n) = @_;
	my $c = $conf;
	$c =~ s/%%REDIS%%/$params/;
	$t->stop();
	$t->write_file_expand('nginx.conf', $c);
	my $m = log_offset($t);
	$t->run();
	my $email = "$who\@example.com";
	my @status = map { status(request('/', cookie => cookie_for($key, $email))) } 1 .. $n;
	die "not admitted: @status\n" if grep { $_ != 200 } @status;
	sleep 1;
	my $total = $redis->total("t:chat:d:$p->{day}:$email", 'requests');
	return ($total, log_since($t, $m));
}

my ($total, $log) = counted("server=127.0.0.1:$tport ssl $trusted ssl_name=redis.test $client",
	'name', 2);
is($total, 2, 'TLS, the server checked by name, a client certificate: the counts reach Redis');
unlike($log, qr/\[error\]/, 'and nothing is logged as a failure');

($total, $log) = counted("server=127.0.0.1:$tport ssl $trusted $client", 'ip', 3);
is($total, 3, 'server=IP:PORT: the certificate is checked against its IP addresses');
unlike($log, qr/\[error\]/, 'no error');

($total, $log) = counted("server=127.0.0.1:$tport ssl ssl_verify=off $client", 'noverify', 1);
is($total, 1, 'ssl_verify=off: connects without checking the server');
unlike($log, qr/\[error\]/, 'no error');

($total, $log) = counted("server=127.0.0.1:$tport ssl ssl_trusted_certificate=$dir/redis-other-ca.crt $client",
	'untrusted', 1);
is($total, '', 'a server not signed by the trusted CA: nothing reaches Redis');
like($log, qr/\[error\] .*gpt_auth_quota_redis "chat": cannot synchronise with 127\.0\.0\.1:$tport: the server's certificate is not trusted \([^)]+\); counting on this node and retrying/,
	'one error line: not trusted, and OpenSSL\'s reason');
my @errors = $log =~ /(cannot synchronise)/g;
is(scalar @errors, 1, 'one line however many rounds failed');

($total, $log) = counted("server=127.0.0.1:$tport ssl $trusted ssl_name=wrong.example $client",
	'wrongname', 1);
is($total, '', 'a certificate for another name: nothing reaches Redis');
like($log, qr/\[error\] .*cannot synchronise with 127\.0\.0\.1:$tport: the server's certificate does not match the name "wrong\.example"/,
	'error: the name does not match');

# a reload with the right name: what the node counted meanwhile reaches Redis

my $c = $conf;
$c =~ s/%%REDIS%%/server=127.0.0.1:$tport ssl $trusted ssl_name=redis.test $client/;
$t->write_file_expand('nginx.conf', $c);
my $m = log_offset($t);
ok(reload_and_wait($t), 'reloaded with the right name');
sleep 1;
is($redis->total("t:chat:d:$p->{day}:wrongname\@example.com", 'requests'), 1,
	'the request counted while the name was wrong reaches Redis');
unlike(log_since($t, $m), qr/\[error\]/, 'the new worker logs no error');

($total, $log) = counted("server=127.0.0.1:$tport ssl $trusted", 'nocert', 1);
is($total, '', 'no client certificate for a Redis that requires one: nothing reaches Redis');
like($log, qr/\[error\] .*cannot synchronise with 127\.0\.0\.1:$tport: (TLS handshake failed|send or receive failed|connection closed before the whole answer)/,
	'error: the handshake or the first exchange fails');

($total, $log) = counted("server=127.0.0.1:$tport", 'plain', 1);
is($total, '', 'plain TCP to the TLS port: nothing reaches Redis');
like($log, qr/\[error\] .*cannot synchronise with 127\.0\.0\.1:$tport: /, 'error line');

###############################################################################
