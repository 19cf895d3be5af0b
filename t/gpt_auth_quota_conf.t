#!/usr/bin/perl

# gpt_auth: configuration errors of the per-user budgets. Every bad gpt_auth_quota_zone,
# gpt_auth_quota and gpt_auth_quota_report fails `nginx -t` with a line that names the
# directive and the reason; good configurations (including a zone declared after its use)
# pass.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http limit_req/);
my $d = $t->testdir();

$t->write_file('keys', key_line(new_key_bytes()) . "\n");
chmod 0600, "$d/keys";
$t->write_file('good.overrides', "alice\@example.com day=10\n\@example.org month=unlimited\n");
$t->write_file('tab.overrides', "# tabs, as in allowlists\ncarol\@example.com\tday=3\t# the intern\n");
$t->write_file('bad.overrides', "alice\@example.com day=10\nbob\@example.com hour=3\n");

my $zone = 'gpt_auth_quota_zone zone=chat:64k;';

# (name, http-level directives, location-level directives, expected error regex)
my @cases = (
	# gpt_auth_quota_zone
	['zone: no zone=', 'gpt_auth_quota_zone state=x.quota;', '',
		qr/\[emerg\] "gpt_auth_quota_zone" directive needs zone=NAME:SIZE in \S+:\d+/],
	['zone: no size', 'gpt_auth_quota_zone zone=chat;', '',
		qr/"gpt_auth_quota_zone" directive invalid zone "chat" \(expected zone=NAME:SIZE\)/],
	['zone: no name', 'gpt_auth_quota_zone zone=:1m;', '',
		qr/"gpt_auth_quota_zone" directive invalid zone ":1m" \(no name\)/],
	['zone: bad size', 'gpt_auth_quota_zone zone=chat:lots;', '',
		qr/"gpt_auth_quota_zone" directive invalid zone size "lots"/],
	['zone: too small', 'gpt_auth_quota_zone zone=chat:16k;', '',
		qr/"gpt_auth_quota_zone" directive zone "chat" is too small \(16k\); at least 32k/],
	['zone: unknown parameter', 'gpt_auth_quota_zone zone=chat:1m size=2m;', '',
		qr/"gpt_auth_quota_zone" directive invalid parameter "size=2m"/],
	['zone: bare word', 'gpt_auth_quota_zone zone=chat:1m persistent;', '',
		qr/"gpt_auth_quota_zone" directive invalid parameter "persistent"/],
	['zone: bad interval', 'gpt_auth_quota_zone zone=chat:1m state=q interval=soon;', '',
		qr/"gpt_auth_quota_zone" directive invalid interval "soon"/],
	['zone: utc_offset out of range', 'gpt_auth_quota_zone zone=chat:1m utc_offset=+25:00;', '',
		qr/"gpt_auth_quota_zone" directive invalid utc_offset "\+25:00": offset out of range/],
	['zone: utc_offset without sign', 'gpt_auth_quota_zone zone=chat:1m utc_offset=5;', '',
		qr/"gpt_auth_quota_zone" directive invalid utc_offset "5": expected \+HH:MM or -HH:MM/],
	['zone: day_length zero', 'gpt_auth_quota_zone zone=chat:1m day_length=0;', '',
		qr/"gpt_auth_quota_zone" directive invalid day_length "0"/],
	['zone: day_length unit', 'gpt_auth_quota_zone zone=chat:1m day_length=3x;', '',
		qr/"gpt_auth_quota_zone" directive invalid day_length "3x"/],
	['zone: duplicate', "$zone gpt_auth_quota_zone zone=chat:1m;", '',
		qr/"gpt_auth_quota_zone" directive zone "chat" is duplicate/],
	['zone: name taken by limit_req_zone',
		'limit_req_zone $binary_remote_addr zone=chat:1m rate=1r/s; '
		. 'gpt_auth_quota_zone zone=chat:1m;', '',
		qr/\[emerg\] .*"chat".*(already|different)/],
	['zone: no arguments', 'gpt_auth_quota_zone;', '',
		qr/\[emerg\] invalid number of arguments in "gpt_auth_quota_zone" directive/],
	['zone: in a location', '', 'gpt_auth_quota_zone zone=chat:1m;',
		qr/\[emerg\] "gpt_auth_quota_zone" directive is not allowed here/],

	# gpt_auth_quota
	['quota: no zone=', $zone, 'gpt_auth_quota day=10;',
		qr/"gpt_auth_quota" directive needs zone=NAME/],
	['quota: unknown zone', $zone, 'gpt_auth_quota zone=nope day=10;',
		qr/\[emerg\] .*"gpt_auth_quota"\N* \S+\.conf:\d+\N*: no "gpt_auth_quota_zone zone=nope:\.\.\." is defined/],
	['quota: missing zone, none at all', '', 'gpt_auth_quota zone=chat day=10;',
		qr/"gpt_auth_quota"\N* \S+\.conf:\d+\N*: no "gpt_auth_quota_zone zone=chat:\.\.\." is defined/],
	['quota: bad day', $zone, 'gpt_auth_quota zone=chat day=lots;',
		qr/"gpt_auth_quota" directive day="lots": expected a number or "unlimited"/],
	['quota: negative day', $zone, 'gpt_auth_quota zone=chat day=-1;',
		qr/"gpt_auth_quota" directive day="-1": expected a number or "unlimited"/],
	['quota: empty day', $zone, 'gpt_auth_quota zone=chat day=;',
		qr/"gpt_auth_quota" directive day="": expected a number or "unlimited"/],
	['quota: bad month', $zone, 'gpt_auth_quota zone=chat month=1.5;',
		qr/"gpt_auth_quota" directive month="1\.5": expected a number or "unlimited"/],
	['quota: unknown method', $zone, 'gpt_auth_quota zone=chat methods=POST,FETCH;',
		qr/"gpt_auth_quota" directive unknown method "FETCH"/],
	['quota: empty method', $zone, 'gpt_auth_quota zone=chat methods=POST,;',
		qr/"gpt_auth_quota" directive unknown method ""/],
	['quota: unknown parameter', $zone, 'gpt_auth_quota zone=chat week=10;',
		qr/"gpt_auth_quota" directive invalid parameter "week=10"/],
	['quota: off with more', $zone, 'gpt_auth_quota off day=1;',
		qr/"gpt_auth_quota" directive invalid parameter "off"/],
	['quota: missing overrides file', $zone,
		'gpt_auth_quota zone=chat day=1 overrides=none.overrides;',
		qr/"gpt_auth_quota" directive quota overrides "\S+none\.overrides" \(2: No such file or directory\)/],
	['quota: broken overrides file', $zone,
		'gpt_auth_quota zone=chat day=1 overrides=bad.overrides;',
		qr/"gpt_auth_quota" directive quota overrides "\S+bad\.overrides": line 2: "hour": expected day, month, day_tokens, month_tokens, day_cost or month_cost/],
	['quota: duplicate', $zone, 'gpt_auth_quota zone=chat day=1; gpt_auth_quota off;',
		qr/"gpt_auth_quota" directive is duplicate/],
	['quota: no arguments', $zone, 'gpt_auth_quota;',
		qr/\[emerg\] invalid number of arguments in "gpt_auth_quota" directive/],

	# gpt_auth_quota_report
	['report: unknown zone', $zone, 'gpt_auth_quota_report zone=nope;',
		qr/\[emerg\] .*"gpt_auth_quota_report" in \S+:\d+: no "gpt_auth_quota_zone zone=nope:\.\.\." is defined/],
	['report: bare name', $zone, 'gpt_auth_quota_report chat;',
		qr/"gpt_auth_quota_report" directive invalid parameter "chat" \(expected zone=NAME\)/],
	['report: empty name', $zone, 'gpt_auth_quota_report zone=;',
		qr/"gpt_auth_quota_report" directive invalid parameter "zone=" \(expected zone=NAME\)/],
	['report: at http level', "$zone gpt_auth_quota_report zone=chat;", '',
		qr/\[emerg\] "gpt_auth_quota_report" directive is not allowed here/],

	# personal API keys
	['bearer: unknown zone', $zone, 'gpt_auth_bearer zone=nope;',
		qr/\[emerg\] .*"gpt_auth_bearer zone=nope": no "gpt_auth_quota_zone zone=nope:\.\.\." is defined/],
	['bearer: bare name', $zone, 'gpt_auth_bearer chat;',
		qr/"gpt_auth_bearer" directive invalid parameter "chat" \(expected zone=NAME\)/],
	['bearer: duplicate', $zone, 'gpt_auth_bearer zone=chat; gpt_auth_bearer off;',
		qr/"gpt_auth_bearer" directive is duplicate/],
	['api keys: unknown zone', $zone, 'gpt_auth_api_keys zone=nope;',
		qr/\[emerg\] .*"gpt_auth_api_keys" in \S+:\d+: no "gpt_auth_quota_zone zone=nope:\.\.\." is defined/],
	['api keys: max=0', $zone, 'gpt_auth_api_keys zone=chat max=0;',
		qr/"gpt_auth_api_keys" directive max="0": expected a number from 1 to 1000/],
	['api keys: no zone', $zone, 'gpt_auth_api_keys max=5;',
		qr/"gpt_auth_api_keys" directive needs zone=NAME/],
);

$t->plan(2 * @cases + 6);

sub conf {
	my ($http, $loc, $srv) = @_;
	$srv //= '';
	return <<"EOF";
%%TEST_GLOBALS%%
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    gpt_auth_key_file keys;
    $http
    server {
        listen 127.0.0.1:8080;
        $srv
        location / {
            gpt_auth on;
            $loc
        }
    }
}
EOF
}

my $i = 0;
for my $c (@cases) {
	my ($name, $http, $loc, $re) = @$c;
	my ($ok, $out) = conf_test($t, 'case' . $i++ . '.conf', conf($http, $loc));
	ok(!$ok, "$name: nginx -t fails");
	like($out, $re, "$name: message") or diag($out);
}

# good configurations pass

my ($ok, $out) = conf_test($t, 'good.conf', conf(
	'gpt_auth_quota_zone zone=chat:32k state=chat.quota interval=10s utc_offset=-05:30;'
	. ' gpt_auth_quota_zone zone=test:1m day_length=2s utc_offset=UTC;',
	'gpt_auth_quota zone=chat day=200 month=3000 methods=post,PUT,patch,DELETE,GET,HEAD,OPTIONS'
	. ' overrides=good.overrides;'
	. ' location /x/ { gpt_auth_quota zone=test day=unlimited month=unlimited; }'
	. ' location /y/ { gpt_auth_quota off; }'
	. ' location = /usage { gpt_auth_quota_report zone=chat; }'));
ok($ok, 'valid configuration passes nginx -t') or diag($out);
is($out =~ s/^.*(syntax is ok|test is successful)\n//mgr, '', 'and says nothing else')
	or diag($out);

# a zone may be declared after the directives that use it (http level, after the server)

($ok, $out) = conf_test($t, 'late.conf', <<'EOF');
%%TEST_GLOBALS%%
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    gpt_auth_key_file keys;
    server {
        listen 127.0.0.1:8080;
        gpt_auth_quota zone=late day=5;
        location / {
            gpt_auth on;
        }
        location = /usage {
            gpt_auth_quota_report zone=late;
        }
    }
    gpt_auth_quota_zone zone=late:1m;
}
EOF
ok($ok, 'a zone declared after its use passes') or diag($out);

# the overrides file takes comments as allowlists do: "#" after a space or a tab

($ok, $out) = conf_test($t, 'tab.conf', conf($zone,
	'gpt_auth_quota zone=chat day=1 overrides=tab.overrides;'));
ok($ok, 'overrides: a comment after a tab') or diag($out);

# a state file in a directory the workers cannot write: a warning at nginx -t (every save would
# fail and a restart would lose the counts); the workers' user is set here, not by the harness

mkdir($t->testdir() . '/ro');
chmod(0555, $t->testdir() . '/ro');
my ($load) = ($ENV{TEST_NGINX_GLOBALS} // '') =~ /(load_module\s+\S+;)/;
($ok, $out) = conf_test($t, 'ro.conf', ($load // '') . <<'EOF');

user nobody nogroup;
daemon off;
events {
}
http {
    gpt_auth_key_file keys;
    gpt_auth_quota_zone zone=ro:64k state=ro/ro.quota;
    server {
        listen 127.0.0.1:8080;
    }
}
EOF
ok($ok, 'an unwritable state directory does not fail nginx -t') or diag($out);
like($out, qr/\[warn\] .*gpt_auth_quota_zone "ro": the workers \(uid \d+\) cannot write the state file in "\S+\/ro": .*install -d -o www-data/,
	'but warns, saying what to do') or diag($out);

###############################################################################
