#!/usr/bin/perl

# gpt_auth: budgets in tokens and money on AI locations, metered from the provider's answers:
# 429 with Retry-After in the provider's error format (the openai SDK's RateLimitError), the
# overrides and price files re-read live, the account's own limit and a group's (members=*,
# @domain), the warn= line and $gpt_auth_quota_warning, the admin's reset and top-up, the
# report as JSON, CSV and HTML, and request budgets not charged when the upstream fails.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota qw/ cookie_for quota_json periods /;
use GptAuthAI;
use Time::HiRes qw/ time sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=tok:1m;
    gpt_auth_quota_zone zone=acct:1m;
    gpt_auth_quota_zone zone=req:1m;
    gpt_auth_quota_group zone=acct name=account members=* day_cost=0.0015;
    gpt_auth_quota_group zone=tok name=partners members=@partner.example day_tokens=120 warn=50%;

    log_format ai '$uri $gpt_auth_email in=$gpt_auth_input_tokens out=$gpt_auth_output_tokens '
                  'cost=$gpt_auth_cost st=$status warning="$gpt_auth_quota_warning"';

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        access_log %%TESTDIR%%/ai.log ai;

        gpt_auth_api openai;
        gpt_auth_meter on;
        gpt_auth_prices %%TESTDIR%%/prices;
        proxy_http_version 1.1;
        proxy_set_header Cookie "";

        location /tok/ {
            gpt_auth on;
            gpt_auth_quota zone=tok day_tokens=200 warn=80% overrides=%%TESTDIR%%/overrides;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /acct/ {
            gpt_auth on;
            gpt_auth_quota zone=acct;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /req/ {
            gpt_auth on;
            gpt_auth_api off;
            gpt_auth_quota zone=req day=3;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /report {
            gpt_auth on;
            gpt_auth_quota_report zone=tok;
        }

        location = /admin {
            gpt_auth on;
            gpt_auth_quota_admin zone=tok;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('overrides', "bob\@example.com day_tokens=unlimited\n");
$t->write_file('prices', "gpt-4o input=2.50 output=10\ngpt-4o-mini input=0.15 output=0.60\n");

my $mock = start_mock($t, port(8081));
$t->run()->plan(39);

###############################################################################

my $base = 'http://127.0.0.1:' . port(8080);

my sub chat {
	my ($prefix, $email, $model, @headers) = @_;
	my $body = '{"model":"' . ($model // 'gpt-4o-mini')
		. '","messages":[{"role":"user","content":"Hello"}]}';
	return request("/$prefix/v1/chat/completions", method => 'POST', body => $body,
		cookie => cookie_for($key, $email),
		headers => ['Content-Type: application/json', 'Accept: application/json', @headers]);
}

my sub statuses {
	my ($prefix, $email, $n, $model) = @_;
	return join ' ', map { status(chat($prefix, $email, $model)) } 1 .. $n;
}

# The last access log line once it matches (and, with $lines, once the log has that many: the
# line of a request just answered may come a moment after its answer).
my sub last_log {
	my ($re, $lines) = @_;
	my @l;
	for (1 .. 40) {
		@l = log_lines($t, 'ai.log');
		last if @l && @l >= ($lines // 0) && $l[-1] =~ /$re/;
		sleep(0.05);
	}
	return $l[-1] // '';
}

# The error log since $off once it matches (the log phase may end after the client has read
# the answer), or as it is after 2 s.
my sub log_until {
	my ($off, $re) = @_;
	for (1 .. 40) {
		my $s = log_since($t, $off);
		return $s if $s =~ $re;
		sleep(0.05);
	}
	return log_since($t, $off);
}

# a token budget: 52 tokens a request (2 in, 50 out), 200 a day

my $log = log_offset($t);
my $lines = () = log_lines($t, 'ai.log');
is(statuses('tok', 'alice@example.com', 3), '200 200 200', 'tokens: 156 of 200 used');
# Each request is settled in its log phase, which may end after its client has the answer: the
# next one is admitted after the access log shows all three (our log handler runs first).
last_log('st=200', $lines + 3);
is(log_since($t, $log), '', 'below the warn= share: no warning');
$lines += 3;
is(status(chat('tok', 'alice@example.com')), 200, 'the 4th request is admitted (156 < 200)');
like(last_log('st=200', $lines + 1), qr/ in=2 out=50 .* warning="day tokens 104%"$/,
	'$gpt_auth_quota_warning past the warn= share');
like(log_until($log, qr/passed/),
	qr/\[warn\] .*quota: "alice\@example.com" passed 80% of the day tokens budget: 208 of 200/,
	'one warn line when the share is passed');

my $t0 = time();
my $r = sdk(base_url => "$base/tok/v1", call => 'chat', model => 'gpt-4o-mini',
	cookie => cookie_for($key, 'alice@example.com')) // {};
my $t1 = time();
is($r->{error_class}, 'RateLimitError', 'over the token budget: the SDK\'s RateLimitError');
is($r->{status}, 429, 'with 429');
is($r->{body}{code}, 'insufficient_quota', 'in the provider\'s error format');
like($r->{message} // '', qr/your day budget is used up \(208 of 200 tokens\); it is reset at /,
	'saying which budget');
my $ra = ($r->{response_headers} // {})->{'retry-after'} // '';
my $ends = periods(time())->{day_ends};
ok($ra =~ /^\d+$/ && $ra >= $ends - $t1 - 2 && $ra <= $ends - $t0 + 1,
	'Retry-After: the seconds until the day ends') or diag("Retry-After $ra");
is(scalar grep({ ($_->{request_headers}{cookie} // '') ne '' } @{ mock_log($mock) }), 0,
	'no cookie reached the provider');

# the overrides file, re-read when it changes

is(status(chat('tok', 'bob@example.com')), 200, 'an unlimited override: bob goes on');
$t->write_file('overrides', "alice\@example.com day_tokens=300\n");
sleep(1.2);
is(statuses('tok', 'alice@example.com', 3), '200 200 429',
	'a changed override: alice gets 300 tokens without a reload');

# the price file, re-read when it changes

chat('acct', 'carol@example.com', 'gpt-4o');
like(last_log('carol'), qr/ cost=0.000505 /, 'gpt-4o at 2.50/10 per million');
$t->write_file('prices', "gpt-4o input=2.50 output=20\ngpt-4o-mini input=0.15 output=0.60\n");
sleep(1.2);
chat('acct', 'carol@example.com', 'gpt-4o');
like(last_log('carol.*cost=0.0010'), qr/ cost=0.001005 /, 'a new price counts without a reload');

# the account's own limit: everyone together (0.0015 US dollars a day)

is(status(chat('acct', 'dave@example.com', 'gpt-4o')), 429,
	'the account\'s budget is used up (0.001510 of 0.0015): a new user is refused too');
like(body(chat('acct', 'dave@example.com', 'gpt-4o')),
	qr/the \\"account\\" group's day budget is used up \(0.001510 of 0.001500 US dollars\)/,
	'saying it is the group\'s');

# a domain group with its own budget, and warn=50%

$log = log_offset($t);
is(statuses('tok', 'p1@partner.example', 2), '200 200', 'partners: 104 of the group\'s 120');
like(log_until($log, qr/passed/),
	qr/\[warn\] .*quota: group "partners" passed 50% of the day tokens budget: 104 of 120/,
	'the group\'s warn line');
is(status(chat('tok', 'p2@partner.example')), 200, 'another partner: 104 < 120');
is(status(chat('tok', 'p3@partner.example')), 429, 'the group is over its budget: refused');
like(body(chat('tok', 'p3@partner.example')), qr/the \\"partners\\" group's day budget/,
	'the group named');
like(body(request('/tok/v1/models', cookie => cookie_for($key, 'p3@partner.example'),
	headers => ['Accept: text/html'])),
	qr{You have used <b>156</b> of the "partners" group's <b>120</b> tokens this day},
	'a browser gets the page, in the budget\'s unit and naming the group');
is(status(chat('tok', 'erin@example.com')), 200, 'a user outside the group goes on');

# the admin: a top-up and a reset

my sub admin {
	my ($form) = @_;
	return request('/admin', method => 'POST', body => $form,
		cookie => cookie_for($key, 'alice@example.com'),
		headers => ['Content-Type: application/x-www-form-urlencoded']);
}
$r = admin('action=topup&group=partners&period=day&tokens=60');
is(status($r), 200, 'admin: a top-up of the group');
is(status(chat('tok', 'p3@partner.example')), 200, 'the group may go on');
$r = admin('action=reset&user=alice%40example.com&period=day');
is(status($r), 200, 'admin: alice\'s day reset');
is(status(chat('tok', 'alice@example.com')), 200, 'and she may go on');
is(status(admin('action=reset&user=not-an-address&period=day')), 400, 'admin: a bad address: 400');
like(body(admin('action=topup&user=alice%40example.com')), qr/"a top-up needs requests=, tokens= or cost="/,
	'admin: a top-up without an amount: 400 and why');
like(body(admin('action=topup&user=alice%40example.com&tokens=ten')),
	qr/"requests and tokens are numbers, cost is US dollars"/, 'admin: a top-up that is not a number');
like(body(admin('action=reset&user=alice%40example.com&period=week')), qr/"period must be day or month"/,
	'admin: an unknown period');

# the report: JSON, CSV, HTML

my $j = quota_json(body(request('/report?format=json',
	cookie => cookie_for($key, 'alice@example.com')))) // {};
my ($p1) = grep { $_->{email} eq 'p1@partner.example' } @{ $j->{users} // [] };
is_deeply([ map { $p1->{models}[0]{day}{$_} } qw/ requests input_tokens output_tokens / ],
	[ 2, 4, 100 ], 'report: p1\'s requests and tokens per model');
my ($g) = grep { $_->{name} eq 'partners' } @{ $j->{groups} // [] };
is($g->{day}{output_tokens}, 200, 'report: the group\'s tokens');
my $csv = body(request('/report?format=csv', cookie => cookie_for($key, 'alice@example.com')));
like($csv, qr/^\S+,user,p1\@partner\.example,gpt-4o-mini,2,4,100,0\.000061\r$/m,
	'report as CSV: a line per user, model and period');
like(body(request('/report', cookie => cookie_for($key, 'alice@example.com'))),
	qr{<td>p1\@partner\.example</td><td>gpt-4o-mini</td><td>2</td><td>4</td><td>100</td>},
	'report as HTML: the model table');

# request budgets on a location that is not metered: an upstream failure is not charged

my sub req {
	my ($status) = @_;
	return status(request('/req/v1/models', cookie => cookie_for($key, 'frank@example.com'),
		headers => [$status ? "X-Mock-Status: $status" : ()]));
}
is(join(' ', map { req(502) } 1 .. 4), '502 502 502 502', 'the upstream fails 4 times');
is(join(' ', map { req() } 1 .. 4), '200 200 200 429', 'none of it was charged (day=3)');
like(log_until(0, qr/not charged/), qr/quota: not charged \(the upstream failed: status 502\)/,
	'the info line says so');

###############################################################################
