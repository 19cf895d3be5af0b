#!/usr/bin/perl

# gpt_auth: a budget shared by two nginx machines ("nodes") through a real Redis
# (gpt_auth_quota_redis). Two nginx instances with one key file, one Redis (Debian's
# redis-server on a loopback port, with a password): a user's requests on either node count
# against one day budget; each node's report shows the other's users and the sum; Redis holds
# the totals under the documented names. Faults: Redis stopped (both nodes go on enforcing with
# their local counts, one [error] line each), started again empty (one [notice] each, each
# node puts its own share of the totals back, nothing counted meanwhile is lost), started again
# from an older snapshot (put back as well), a wrong password (an [error] naming the refusal).
# Personal API keys: created on one node, accepted on the other; revoked on one, refused on the
# other within about a second. And `nginx -t` errors.

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

my $ta = Test::Nginx->new()->has(qw/http proxy/);
my $tb = Test::Nginx->new()->has(qw/http proxy/);
my $dir = $ta->testdir();
my $rport = port(8090);
my $password = 'pw-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 12);

# node A: 8081 (backend 8083), node B: 8082 (backend 8084)
my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%KEYS%%;

    gpt_auth_quota_zone zone=chat:1m state=%%TESTDIR%%/chat.quota interval=1h;
    gpt_auth_quota_redis zone=chat server=%%SERVER%%
                         node=%%NODE%% password_file=%%PWFILE%% prefix=t:
                         interval=200ms timeout=%%TIMEOUT%%;

    server {
        listen       127.0.0.1:%%PORT%%;
        server_name  localhost;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;
        gpt_auth_bearer zone=chat;

        location = /keys {
            gpt_auth on;
            gpt_auth_api_keys zone=chat max=3;
        }

        location /k/ {
            gpt_auth on;
            proxy_pass http://127.0.0.1:%%BACKEND%%;
        }

        location /x/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=%%DAY%%;
            proxy_pass http://127.0.0.1:%%BACKEND%%;
        }

        location = /usage {
            gpt_auth on;
            gpt_auth_quota_report zone=chat;
        }

        location = /admin {
            gpt_auth on;
            gpt_auth_quota_admin zone=chat;
        }
    }

    server {
        listen       127.0.0.1:%%BACKEND%%;
        server_name  backend;

        location / {
            return 200 "backend\n";
        }
    }
}

EOF

my sub node_conf {
	my ($t, $port, $backend, %a) = @_;
	my $c = $conf;
	$c =~ s/%%PORT%%/$port/g;
	$c =~ s/%%NODE%%/$port == 8081 ? 'a' : 'b'/ge;
	$c =~ s/%%BACKEND%%/$backend/g;
	$c =~ s/%%KEYS%%/$dir\/keys/g;
	$c =~ s/%%PWFILE%%/$a{pwfile} \/\/ "$dir\/redis.pw"/ge;
	$c =~ s/%%SERVER%%/$a{server} \/\/ '127.0.0.1:%%PORT_8090%%'/ge;
	$c =~ s/%%DAY%%/$a{day} \/\/ 20/ge;
	$c =~ s/%%TIMEOUT%%/$a{timeout} \/\/ '500ms'/ge;
	$t->write_file_expand('nginx.conf', $c);
}

my $key = new_key_bytes();
$ta->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$ta->write_file('redis.pw', "$password\n");
$ta->write_file('wrong.pw', "not-the-password\n");

my $redis = redis_new(dir => $dir, port => $rport, password => $password);
my sub redis { $redis->cmd(@_) }

# nginx -t: what the directive refuses

my @bad = (
	[ 'gpt_auth_quota_redis server=127.0.0.1:1;', qr/"gpt_auth_quota_redis" directive needs zone=NAME/, 'no zone' ],
	[ 'gpt_auth_quota_redis zone=chat;', qr/needs server=HOST:PORT or server=unix:PATH/, 'no server' ],
	[ 'gpt_auth_quota_redis zone=other server=127.0.0.1:1;', qr/zone "other" is not defined \(gpt_auth_quota_zone must come first\)/, 'unknown zone' ],
	[ 'gpt_auth_quota_redis zone=chat server=127.0.0.1:1; gpt_auth_quota_redis zone=chat server=127.0.0.1:2;', qr/zone "chat" has a Redis server already/, 'twice' ],
	[ 'gpt_auth_quota_redis zone=chat server=no-such-host.invalid:6379;', qr/server "no-such-host\.invalid:6379": host not found/, 'host not found' ],
	[ 'gpt_auth_quota_redis zone=chat server=127.0.0.1:99999;', qr/server "127\.0\.0\.1:99999": invalid port/, 'bad port' ],
	[ "gpt_auth_quota_redis zone=chat server=127.0.0.1:1 password_file=$dir/none.pw;", qr/none\.pw/, 'password file missing' ],
	[ 'gpt_auth_quota_redis zone=chat server=127.0.0.1:1 user=gpt;', qr/user= needs password_file=/, 'user without password' ],
	[ 'gpt_auth_quota_redis zone=chat server=127.0.0.1:1 interval=0;', qr/invalid interval "0": must be more than 0/, 'interval 0' ],
	[ 'gpt_auth_quota_redis zone=chat server=127.0.0.1:1 timeout=soon;', qr/invalid timeout "soon"/, 'bad timeout' ],
	[ 'gpt_auth_quota_redis zone=chat server=127.0.0.1:1 colour=red;', qr/invalid parameter "colour=red"/, 'unknown parameter' ],
);

my $plan = 60 + @bad;
# Node B's final checks: the upstream nginx-tests library adds "no alerts" and "no sanitizer
# errors" for every instance alive once there is a plan, the project's harness checks the logs
# of all instances in one pair (counted by plan()).
my $second_checks = Test::Nginx->can('_teardown') ? 0 : 2;
$ta->plan($plan + $second_checks);

for my $b (@bad) {
	my ($line, $re, $what) = @$b;
	my ($ok, $out) = conf_test($ta, 'bad.conf', <<"EOF");
%%TEST_GLOBALS%%
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    gpt_auth_quota_zone zone=chat:1m;
    $line
}
EOF
	ok(!$ok && $out =~ /\[emerg\].*$re/, "nginx -t: $what") or diag($out);
}

###############################################################################

$redis->start();
node_conf($ta, 8081, 8083);
node_conf($tb, 8082, 8084);
$ta->run();
$tb->run();

my ($alice, $bob) = ('alice@example.com', 'bob@example.com');

my sub get {
	my ($node, $email, $uri) = @_;
	return request($uri // '/x/', cookie => cookie_for($key, $email),
		port => $node eq 'A' ? 8081 : 8082);
}

# "status day-used" of a request
my sub used {
	my ($node, $email) = @_;
	my $r = get($node, $email);
	return status($r) . ' ' . (header($r, 'X-Day-Used') // '-');
}

my $round = 0.2;	# interval=200ms
my sub rounds { sleep($round * ($_[0] // 3)) }

my $p = periods(time());

# one budget across both nodes

is(used('A', $alice), '200 1', 'node A: alice 1');
is(used('A', $alice), '200 2', 'node A: alice 2');
get('A', $bob);
rounds();
is(used('B', $alice), '200 3', 'node B knows what alice used on A: 3');
rounds();
is(used('A', $alice), '200 4', 'and node A what she used on B: 4');
rounds();
is($redis->total("t:chat:d:$p->{day}:$alice", 'requests'), 4,
	'Redis holds the day total under PREFIX ZONE:d:DAY:KEY');
is($redis->total("t:chat:m:$p->{month}:$alice", 'requests'), 4, 'and the month total');
my %f = split /\n/, redis('HGETALL', "t:chat:d:$p->{day}:$alice");
is(join(' ', map { "$_=$f{$_}" } sort grep { /^requests:/ } keys %f), 'requests:a=3 requests:b=1',
	'one field per node (node=a, node=b): each node\'s share');
is(join(' ', sort split /\n/, redis('SMEMBERS', "t:chat:keys:$p->{month}")), "$alice $bob",
	'the month index lists the keys charged');
my $ttl = redis('TTL', "t:chat:d:$p->{day}:$alice");
ok($ttl > 86400 && $ttl <= 2 * 86400, "the day hash expires a day after the day ends ($ttl s)");

my $report = quota_json(body(get('B', $alice, '/usage?format=json'))) // {};
my %users = map { $_->{email} => $_->{day} } @{ $report->{users} // [] };
is(join(' ', map { "$_:$users{$_}" } sort keys %users), "$alice:4 $bob:1",
	'node B\'s report shows both users, bob only ever seen on A');

# the budget (day=20) is one budget: alternate between the nodes until refused

my ($ok, $refused) = (0, 0);
for my $i (1 .. 30) {
	my $r = get($i % 2 ? 'A' : 'B', $alice);
	status($r) == 200 ? $ok++ : $refused++;
	sleep 0.05;
}
rounds();
my $total = $redis->total("t:chat:d:$p->{day}:$alice", 'requests');
# one request every 50 ms, a round every 200 ms: each node can admit the requests of at most
# one round it has not heard of yet, 2 nodes x 2 requests (the documented bound)
ok($ok >= 16 && $ok <= 16 + 4, "alternating: $ok more admitted on both nodes together (16 left of 20, bound +4)");
is($total, 4 + $ok, 'Redis counted every admitted request once');
is(used('A', $alice), "429 $total", 'refused on A with the cluster total');
is(used('B', $alice), "429 $total", 'refused on B with the cluster total');

# Redis stopped: both nodes go on, with their local counts

my ($ma, $mb) = (log_offset($ta), log_offset($tb));
$redis->stop();
is(used('A', $bob), '200 2', 'Redis down: node A still admits bob (2)');
is(used('B', $bob), '200 2', 'node B too, with what it knew (2: its own)');
is(used('B', $alice), "429 $total", 'and still refuses alice');
rounds(5);
like(log_since($ta, $ma), qr/\[error\] .*gpt_auth_quota_redis "chat": cannot synchronise with 127\.0\.0\.1:\d+: cannot connect; counting on this node and retrying/,
	'node A: one error line');
my @errors = log_since($tb, $mb) =~ /(cannot synchronise)/g;
is(scalar @errors, 1, 'node B: one error line however many rounds failed');

# Redis back, empty: each node puts its own share back, nothing counted meanwhile is lost

$redis->start();
($ma, $mb) = (log_offset($ta), log_offset($tb));
sleep 3;	# the back-off after a few failed rounds is at most 1.6 s here
like(log_since($ta, $ma), qr/\[notice\] .*gpt_auth_quota_redis "chat": synchronised with 127\.0\.0\.1:\d+ again/,
	'node A: recovery notice');
like(log_since($tb, $mb), qr/\[notice\] .*synchronised with .* again/, 'node B: recovery notice');
is($redis->total("t:chat:d:$p->{day}:$bob", 'requests'), 3,
	'bob\'s total in the emptied Redis: 1 before + 1 on each node meanwhile');
is($redis->total("t:chat:d:$p->{day}:$alice", 'requests'), $total,
	'alice\'s total put back by the nodes (each its own share)');
is(used('A', $bob), '200 4', 'node A goes on from the cluster total');
is(used('B', $alice), "429 $total", 'alice is still refused');

# Redis restarted from an older snapshot: put back as well

rounds();
redis('SAVE');
get('A', $bob) for 1 .. 3;	# 7, after the snapshot
rounds();
is($redis->total("t:chat:d:$p->{day}:$bob", 'requests'), 7, 'bob: 7 in Redis');
$redis->stop();
# what the snapshot holds, seen on a Redis of its own (the nodes do not know its port)
my $copy = redis_new(dir => $dir, port => port(8091), password => $password)->start(keep => 1);
is($copy->total("t:chat:d:$p->{day}:$bob", 'requests'), 4, 'the snapshot has 4');
$copy->stop();
$redis->start(keep => 1);
sleep 3;
is($redis->total("t:chat:d:$p->{day}:$bob", 'requests'), 7, 'put back to 7 by the nodes');
is(used('B', $bob), '200 8', 'node B: bob goes on from 7');

# personal API keys: created on A, accepted on B; revoked on B, refused on A

my sub keys_page {
	my ($node, $form) = @_;
	return request('/keys', cookie => cookie_for($key, $alice), method => 'POST', body => $form,
		port => $node eq 'A' ? 8081 : 8082,
		headers => ['Content-Type: application/x-www-form-urlencoded', 'Accept: application/json']);
}

my sub with_key {
	my ($node, $k) = @_;
	return status(request('/k/', headers => ["Authorization: Bearer $k"],
		port => $node eq 'A' ? 8081 : 8082));
}

my $made = quota_json(body(keys_page('A', 'action=create&name=laptop'))) // {};
my $apikey = $made->{key} // '-';
is(with_key('A', $apikey), 200, 'API key created on A works on A');
my $t0 = time();
my $seen;
while (time() - $t0 < 3) {
	last if ($seen = with_key('B', $apikey)) == 200;
	sleep 0.1;
}
is($seen, 200, 'and on B (after its next round)');
ok(time() - $t0 < 2, sprintf('B accepted it %.1f s after its creation', time() - $t0));
is(redis('HLEN', 't:chat:apikeys'), 1, 'Redis holds the key\'s record (never the key)');
unlike(redis('HGETALL', 't:chat:apikeys'), qr/\Q$apikey\E/, 'the record is not the key');

is(status(keys_page('B', "action=revoke&id=$made->{id}")), 200, 'revoked on B');
is(with_key('B', $apikey), 401, 'refused on B at once');
$t0 = time();
while (time() - $t0 < 3) {
	last if ($seen = with_key('A', $apikey)) == 401;
	sleep 0.1;
}
is($seen, 401, 'and refused on A');
ok(time() - $t0 < 2, sprintf('A refused it %.1f s after the revocation', time() - $t0));
is(redis('SISMEMBER', 't:chat:apikeys:revoked', $made->{id}), 1, 'Redis lists the revoked id');

# the scripts flushed from Redis (SCRIPT FLUSH, or a restart between two rounds): sent again
# at once, without a failure

my sub script_loads {
	my ($calls) = redis('INFO', 'commandstats') =~ /cmdstat_script\|load:calls=(\d+)/;
	return $calls // 0;
}
my $loads = script_loads();
ok($loads >= 2, "the scripts were loaded ($loads SCRIPT LOADs: each node's first round)");
get('A', $bob);
rounds(5);
is(script_loads(), $loads, 'rounds call the scripts by SHA-1: no SCRIPT LOAD while Redis has them');

$ma = log_offset($ta);
my $carol_day = "t:chat:d:$p->{day}:carol\@example.com";
is(redis('SCRIPT', 'FLUSH'), 'OK', 'scripts flushed');
get('A', 'carol@example.com') for 1 .. 2;
rounds();
is($redis->total($carol_day, 'requests'), 2, 'the counts still reach Redis');
ok(script_loads() > $loads, 'after the scripts were loaded again');
unlike(log_since($ta, $ma), qr/\[error\]/, 'and nothing is logged as a failure');

# an administrator's reset is refused for now (the next round would undo it)

my $r = request('/admin?action=reset&user=' . $alice . '&period=day', method => 'POST',
	cookie => cookie_for($key, $alice), port => 8081);
is(status($r), 409, 'admin reset on a shared zone: 409');
like(body($r), qr/not available yet on a zone shared through Redis/, 'says why');

# reload: the new worker 0 goes on with the rounds

my $before = $redis->total("t:chat:d:$p->{day}:$bob", 'requests');
ok(reload_and_wait($tb), 'node B reloaded');
get('B', $bob);
rounds();
is($redis->total("t:chat:d:$p->{day}:$bob", 'requests'), $before + 1,
	'after a reload node B still sends its counts');

# a restart with the state file: what was not sent yet is saved and sent after the start,
# nothing twice (interval=1h: the file is written at exit only)

get('A', $bob) for 1 .. 3;
$ta->stop();	# within a round of the requests: some may not have been sent
$ta->run();
rounds();
is($redis->total("t:chat:d:$p->{day}:$bob", 'requests'), $before + 4,
	'node A restarted from its state file: Redis has every request once');
is(used('A', $bob), '200 ' . ($before + 5), 'and node A goes on from the cluster total');

# a stop while a round waits for a frozen Redis: the worker ends the round at its exit (no
# socket left open, which nginx reports as an alert) and keeps its counts for the state file;
# they reach Redis after the start

$ta->stop();
node_conf($ta, 8081, 8083, timeout => '10s');
$ta->run();
rounds();
$before = $redis->total("t:chat:d:$p->{day}:$bob", 'requests');
get('A', $bob) for 1 .. 2;
$redis->pause();
rounds(2);	# the next round took bob's 2 and waits for Redis (up to 10 s)
$ma = log_offset($ta);
my $stopping = time();
$ta->stop();
ok(time() - $stopping < 5, 'node A stops at once, not after the round\'s timeout');
unlike(log_since($ta, $ma), qr/\[alert\]/, 'no alert at exit: the round\'s socket was closed');
$redis->resume();
node_conf($ta, 8081, 8083);
$ta->run();
rounds();
is($redis->total("t:chat:d:$p->{day}:$bob", 'requests'), $before + 2,
	'the round under way at the exit reaches Redis after the start');

# a unix socket

$ta->stop();
node_conf($ta, 8081, 8083, server => "unix:$dir/redis-$rport.sock");
$ta->run();
get('A', $alice . '.x') for 1 .. 2;
rounds();
is($redis->total("t:chat:d:$p->{day}:$alice.x", 'requests'), 2, 'server=unix:PATH: counts reach Redis');

# an ACL user (user= and its password)

is(redis('ACL', 'SETUSER', 'gpt', 'on', '>acl-pw-1', '~t:*', '+@all'), 'OK', 'ACL user made');
$ta->write_file('acl.pw', "acl-pw-1\n");
$ta->stop();
$ma = log_offset($ta);
node_conf($ta, 8081, 8083, pwfile => "$dir/acl.pw user=gpt");
$ta->run();
get('A', $alice . '.y');
rounds();
is($redis->total("t:chat:d:$p->{day}:$alice.y", 'requests'), 1, 'user=NAME: counts reach Redis');
unlike(log_since($ta, $ma), qr/\[error\]/, 'no error with the ACL user');

# a wrong password: the error names the refusal, the node goes on

$ta->stop();
$ma = log_offset($ta);
node_conf($ta, 8081, 8083, pwfile => "$dir/wrong.pw");
$ta->run();
is(used('A', $alice . '.x'), '200 3',
	'wrong password: node A goes on from its state file, counting on its own');
rounds(3);
like(log_since($ta, $ma), qr/\[error\] .*gpt_auth_quota_redis "chat": cannot synchronise with .*: authentication failed: WRONGPASS/,
	'wrong password: an error line naming the refusal');

###############################################################################
