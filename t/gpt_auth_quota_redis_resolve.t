#!/usr/bin/perl

# gpt_auth: a Redis server named by a host name looked up with nginx's resolver before each
# round (gpt_auth_quota_redis ... resolve), not once when the configuration is read. A tiny DNS
# server (t/lib/GptAuthDns.pm) answers from a file the test rewrites: counts reach Redis while
# the name points at it; a name that stops resolving and a name that points elsewhere each
# break the synchronisation with one [error] line saying why; when the name points at Redis
# again the rounds recover ([notice]) and what was counted meanwhile reaches Redis — all
# without a reload. And `nginx -t` errors.

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
use GptAuthDns;
use Time::HiRes qw/ time sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);
my $dir = $t->testdir();
my $rport = port(8090);
my $dns_file = "$dir/dns.txt";
my ($dns, $dport) = dns_start($dns_file);
END { dns_stop($dns) if $dns }
my $password = 'pw-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 12);

$t->write_file_expand('nginx.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    resolver 127.0.0.1:$dport valid=1s ipv6=off;
    resolver_timeout 1s;

    gpt_auth_quota_zone zone=chat:1m;
    gpt_auth_quota_redis zone=chat server=redis.test:$rport resolve
                         password_file=%%TESTDIR%%/redis.pw prefix=t: node=a
                         interval=200ms timeout=500ms;

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
            return 200 "ok\\n";
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$t->write_file('redis.pw', "$password\n");

# nginx -t: what `resolve` refuses

my @bad = (
	[ '', "server=redis.test:$rport resolve",
		qr/gpt_auth_quota_redis zone=chat: "resolve" needs a "resolver" in the http block/,
		'resolve without a resolver' ],
	[ "resolver 127.0.0.1:$dport;", "server=127.0.0.1:$rport resolve",
		qr/"gpt_auth_quota_redis" directive server "127\.0\.0\.1:\d+": resolve needs a host name/,
		'resolve with an address' ],
	[ "resolver 127.0.0.1:$dport;", "server=unix:$dir/r.sock resolve",
		qr/resolve needs a host name/, 'resolve with a unix socket' ],
);

$t->plan(12 + @bad);

for my $b (@bad) {
	my ($resolver, $params, $re, $what) = @$b;
	my ($ok, $out) = conf_test($t, 'bad.conf', <<"EOF");
%%TEST_GLOBALS%%
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    $resolver
    gpt_auth_quota_zone zone=chat:1m;
    gpt_auth_quota_redis zone=chat $params;
}
EOF
	ok(!$ok && $out =~ /\[emerg\].*$re/, "nginx -t: $what") or diag($out);
}

###############################################################################

my $redis = redis_new(dir => $dir, port => $rport, password => $password);
$redis->start();
my sub points_to { $t->write_file('dns.txt', "redis.test $_[0]\n") }
points_to('127.0.0.1');

$t->run();

my $p = periods(time());
my sub total { $redis->total("t:chat:d:$p->{day}:$_[0]\@example.com", 'requests') }
my sub send_as {
	my ($who, $n) = @_;
	my @s = map { status(request('/', cookie => cookie_for($key, "$who\@example.com"))) } 1 .. $n;
	return join ' ', @s;
}

is(send_as('alice', 2), '200 200', 'admitted');
sleep 1;
is(total('alice'), 2, 'server=redis.test resolve: the counts reach Redis at the address the name has');

# the name stops resolving

my $m = log_offset($t);
$t->write_file('dns.txt', "other.test 127.0.0.1\n");
sleep 2.5;	# the resolver's answer is valid for 1 s
is(send_as('bob', 1), '200', 'the name gone: requests go on');
sleep 1;
is(total('bob'), '', 'nothing reaches Redis');
like(log_since($t, $m), qr/\[error\] .*gpt_auth_quota_redis "chat": cannot synchronise with redis\.test:\d+: cannot resolve the host \(Host not found\); counting on this node and retrying/,
	'one error line: the resolver\'s reason');

# back: the rounds recover without a reload, bob's request arrives

$m = log_offset($t);
points_to('127.0.0.1');
sleep 3.5;	# back-off after a few failures, and the resolver's negative answer
like(log_since($t, $m), qr/\[notice\] .*synchronised with redis\.test:\d+ again/, 'recovered');
is(total('bob'), 1, 'what was counted meanwhile reached Redis');

# the name points elsewhere (nothing listens there): the next rounds go there

$m = log_offset($t);
points_to('127.0.0.2');
sleep 2.5;
is(send_as('carol', 3), '200 200 200', 'the name moved: requests go on');
sleep 1;
is(total('carol'), '', 'nothing reaches the Redis at the old address');
my $log = log_since($t, $m);
like($log, qr/\[error\] .*cannot synchronise with redis\.test:\d+: cannot connect/,
	'error: the new address does not answer');
my @errors = $log =~ /(cannot synchronise)/g;
is(scalar @errors, 1, 'one error line however many rounds failed');

points_to('127.0.0.1');
sleep 3.5;
is(total('carol'), 3, 'the name back at Redis: carol\'s requests reach it');

$t->stop();

###############################################################################
