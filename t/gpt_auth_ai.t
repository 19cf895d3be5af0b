#!/usr/bin/perl

# gpt_auth: AI APIs behind the login, driven by the official openai and anthropic Python SDKs
# (t/ai/client.py) against the mock provider (t/ai/mock_provider.py). Model rules per user
# (gpt_auth_models, the SDK's permission error, the filtered model list), metering from the
# provider's answers (JSON, streams split at awkward places, Content-Length and close framing,
# gzip asked for, usage added to a stream that did not ask and removed again, responses,
# embeddings, Anthropic messages with cache tokens), the fallback for answers without usage,
# error answers not charged, what reaches the provider (the company's key, never the user's
# cookie), the variables in an access log line, and the report. Budgets in tokens and money
# are in t/gpt_auth_ai_budget.t.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota qw/ cookie_for quota_json /;
use GptAuthAI;
use Time::HiRes qw/ sleep /;

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
    gpt_auth_quota_zone zone=ai:1m;

    log_format ai '$uri $gpt_auth_email model=$gpt_auth_model in=$gpt_auth_input_tokens '
                  'out=$gpt_auth_output_tokens cost=$gpt_auth_cost '
                  'src=$gpt_auth_usage_source st=$status';

    upstream provider {
        server 127.0.0.1:8081;
        keepalive 4;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        access_log %%TESTDIR%%/ai.log ai;
        client_body_buffer_size 1k;

        location /v1/ {
            gpt_auth on;
            gpt_auth_api openai;
            gpt_auth_models gpt-4o-mini text-embedding-*;
            gpt_auth_models gpt-4* o1* o3* allowlist=%%TESTDIR%%/gpt4.allow;
            gpt_auth_models_filter on;
            gpt_auth_meter on;
            gpt_auth_prices %%TESTDIR%%/prices;
            gpt_auth_api_body_limit 64k;
            gpt_auth_quota zone=ai;

            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer company-key";
            proxy_set_header Cookie "";
            proxy_buffering off;
        }

        location /anthropic/ {
            gpt_auth on;
            gpt_auth_api anthropic;
            gpt_auth_models claude-opus-* allowlist=%%TESTDIR%%/gpt4.allow;
            gpt_auth_models claude-*;
            gpt_auth_meter on;
            gpt_auth_prices %%TESTDIR%%/prices;
            gpt_auth_quota zone=ai;

            proxy_pass http://provider/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header x-api-key company-key;
            proxy_set_header Cookie "";
            proxy_buffering off;
        }

        location = /report {
            gpt_auth on;
            gpt_auth_quota_report zone=ai;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('gpt4.allow', "alice\@example.com\n");
$t->write_file('prices', <<'EOF');
# US dollars per million tokens
gpt-4o                  input=2.50 cached_input=1.25 output=10
gpt-4o-mini             input=0.15 cached_input=0.075 output=0.60
text-embedding-3-small  input=0.02 output=0
claude-*                input=3 cached_input=0.30 cache_creation_input=3.75 output=15
EOF

my $mock = start_mock($t, port(8081));
$t->run()->plan(54);

###############################################################################

my $base = 'http://127.0.0.1:' . port(8080);
my %cookie = map { $_ => cookie_for($key, "$_\@example.com") } qw/ alice bob /;

# One SDK call as a user; waits for its access log line and returns (result, log line, the
# mock's log entry of it or undef).
my $lines = 0;
my sub call {
	my ($user, %a) = @_;
	my $sdk = $a{sdk} // 'openai';
	my $url = $sdk eq 'anthropic' ? "$base/anthropic" : "$base/v1";
	my $before = scalar @{ mock_log($mock) };
	my $res = sdk(base_url => $url, sdk => $sdk, (defined $user ? (cookie => $cookie{$user}) : ()),
		%a) // {};
	my @l;
	for (1 .. 50) {
		@l = log_lines($t, 'ai.log', $lines);
		last if @l;
		sleep(0.05);
	}
	$lines += @l;
	my $m = mock_log($mock);
	return ($res, $l[-1] // '', @$m > $before ? $m->[-1] : undef);
}

my $gpt4o = sub { usd(price_nanos([$_[0], '2.50'], [$_[1], '10'])) };

# chat, JSON: the answer intact, the usage charged at the model's price

my ($r, $line, $m) = call('alice', call => 'chat', model => 'gpt-4o');
ok($r->{ok}, 'chat: the SDK call succeeds') or diag(explain($r));
is($r->{content}, $m->{content}, 'chat: the content is the provider\'s');
is($r->{usage}{completion_tokens}, 50, 'chat: the SDK sees the usage');
is($line, '/v1/chat/completions alice@example.com model=gpt-4o in=2 out=50 cost='
	. $gpt4o->(2, 50) . ' src=reported st=200', 'chat: charged the reported usage and its cost');
is($m->{request_headers}{authorization}, 'Bearer company-key',
	'the provider gets the company\'s key');
ok(!exists $m->{request_headers}{cookie}, 'and never the user\'s session cookie');

# a stream that did not ask for usage: asked for on its way, removed on its way back

($r, $line, $m) = call('alice', call => 'chat', model => 'gpt-4o', stream => 1,
	mock => ['split=awkward', 'delay-ms=1']);
ok($r->{ok}, 'stream split at awkward places: the SDK call succeeds') or diag(explain($r));
is($r->{content}, $m->{content}, 'stream: the content arrives intact');
is($m->{include_usage}, JSON::PP::true, 'stream: the provider was asked for its usage');
is($r->{usage}, undef, 'stream: the client, which did not ask, sees no usage');
is($r->{chunks}, 52, 'stream: every chunk but the usage chunk reached the client');
like($line, qr/ in=2 out=50 cost=\S+ src=reported st=200$/, 'stream: charged what was reported');

($r, $line) = call('alice', call => 'chat', model => 'gpt-4o', stream => 1, include_usage => 1,
	mock => ['chunked=0', 'crlf=1']);
is($r->{usage}{completion_tokens}, 50, 'stream with include_usage (Content-Length, CRLF): '
	. 'the client that asked gets the usage');
is($r->{chunks}, 53, 'and the usage chunk');
like($line, qr/ in=2 out=50 .* src=reported st=200$/, 'and it is charged');

($r, $line, $m) = call('alice', call => 'chat', model => 'gpt-4o-mini', stream => 1,
	mock => ['chunked=close', 'events=7', 'split=random:5', 'delay-ms=1']);
ok($r->{ok} && $r->{content} eq $m->{content}, 'stream delimited by the connection\'s close');
is($line, '/v1/chat/completions alice@example.com model=gpt-4o-mini in=2 out=7 cost='
	. usd(price_nanos([2, '0.15'], [7, '0.60'])) . ' src=reported st=200',
	'and charged at the other model\'s price');
cmp_ok($m->{conn_seq}, '>', 1, 'the upstream connection was kept alive (keepalive)');

# gzip: the client asks for it, the answer comes uncompressed so that it can be read

($r, $line, $m) = call('alice', call => 'chat', model => 'gpt-4o', stream => 1, mock => ['gzip=1']);
ok($r->{ok}, 'gzip asked for: the SDK call succeeds');
ok(!exists $m->{request_headers}{'accept-encoding'} && !$m->{gzip},
	'the provider was not asked to compress');
like($line, qr/ out=50 .* src=reported st=200$/, 'and the answer was metered');

# responses and embeddings

($r, $line) = call('alice', call => 'responses', model => 'gpt-4o', stream => 1,
	prompt => 'Hello there, model', mock => ['split=bytewise']);
is($r->{usage}{output_tokens}, 50, 'responses stream (bytewise): usage in response.completed');
like($line, qr{^/v1/responses alice\@example.com model=gpt-4o in=5 out=50 .* src=reported},
	'responses stream: charged');
($r, $line) = call('alice', call => 'responses', model => 'gpt-4o', max_tokens => 9);
like($line, qr{^/v1/responses .* in=2 out=9 .* src=reported}, 'responses JSON: charged');

($r, $line) = call('bob', call => 'embeddings', model => 'text-embedding-3-small',
	input => ['one two three four', 'five']);
ok($r->{ok}, 'embeddings: bob may use the embedding model');
is($line, '/v1/embeddings bob@example.com model=text-embedding-3-small in=6 out=0 cost='
	. usd(price_nanos([6, '0.02'])) . ' src=reported st=200', 'embeddings: input tokens charged');

# models: who may use which

($r, $line, $m) = call('bob', call => 'chat', model => 'gpt-4o');
is($r->{error_class}, 'PermissionDeniedError', 'bob and gpt-4o: the SDK\'s permission error');
is($r->{status}, 403, 'with 403');
is($r->{body}{code}, 'model_not_allowed', 'and the provider\'s error format');
like($r->{message} // '', qr/not allowed to use the model "gpt-4o"/, 'saying why');
is($m, undef, 'the request never reached the provider');
like($line, qr/ model=gpt-4o in=0 out=0 cost=0.000000 src=none st=403$/, 'nothing was metered; the log line names the model');

($r) = call('bob', call => 'models');
is(join(' ', sort @{ $r->{models} // [] }), 'gpt-4o-mini text-embedding-3-large '
	. 'text-embedding-3-small', 'bob\'s model list has only the models he may use');
($r) = call('alice', call => 'models');
is(join(' ', sort @{ $r->{models} // [] }), 'gpt-4.1 gpt-4.1-mini gpt-4o gpt-4o-mini o1-mini '
	. 'o3-mini text-embedding-3-large text-embedding-3-small',
	'alice\'s has the expensive ones too, and no model no rule allows');

($r, $line) = call(undef, call => 'chat', model => 'gpt-4o-mini');
is($r->{error_class}, 'AuthenticationError', 'no session: the SDK\'s authentication error');

# request bodies: in a temporary file, too large

my $long = 'lorem ipsum ' x 2000;
($r, $line, $m) = call('alice', call => 'chat', model => 'gpt-4o-mini', prompt => $long);
ok($r->{ok} && $m, 'a body nginx keeps in a temporary file is read and passed on');
like($line, qr/ in=6000 out=50 /, 'and metered');
($r, $line, $m) = call('bob', call => 'chat', model => 'gpt-4o', prompt => $long);
is($r->{status}, 403, 'a model in a body from a temporary file is checked too');
($r, $line, $m) = call('alice', call => 'chat', model => 'gpt-4o-mini', prompt => $long x 3);
is($r->{status}, 413, 'a body over gpt_auth_api_body_limit: 413') or diag(explain($r));
is($m, undef, 'not passed on');

# answers without usage: the fallback; error answers: not charged

($r, $line) = call('alice', call => 'chat', model => 'gpt-4o', stream => 1,
	mock => ['interrupt=10']);
is($r->{error_class}, 'APIConnectionError', 'a stream cut off: the SDK sees the connection end');
like($line, qr/ in=\d+ out=\d+ cost=\S+ src=estimated st=200$/, 'and the fallback is charged');
like($t->read_file('error.log'),
	qr/\[notice\] .*AI usage: the stream was cut off before its usage; charged the fallback: \d+ input and \d+ output tokens/,
	'with a notice line');

($r, $line) = call('alice', call => 'chat', model => 'gpt-4o', mock => ['status=500']);
is($r->{error_class}, 'InternalServerError', 'a provider\'s 500: the SDK\'s error');
like($line, qr/ in=0 out=0 cost=0.000000 src=none st=500$/, 'not charged');
($r, $line) = call('alice', call => 'chat', model => 'gpt-4o', mock => ['status=429']);
is($r->{error_class}, 'RateLimitError', 'the provider\'s own 429 reaches the client');
like($line, qr/ in=0 out=0 cost=0.000000 src=none st=429$/, 'a request without tokens');

# Anthropic messages, with cache tokens

($r, $line, $m) = call('alice', sdk => 'anthropic', call => 'messages', model => 'claude-sonnet-4-5',
	stream => 1, max_tokens => 100, mock => ['cache-read=10', 'cache-creation=4']);
ok($r->{ok} && $r->{content} eq $m->{content}, 'anthropic stream: the answer intact');
is($line, '/anthropic/v1/messages alice@example.com model=claude-sonnet-4-5 in=16 out=50 cost='
	. usd(price_nanos([2, '3'], [10, '0.30'], [4, '3.75'], [50, '15']))
	. ' src=reported st=200', 'anthropic: input and cache tokens charged at their prices');
is($m->{request_headers}{'x-api-key'}, 'company-key', 'anthropic: the company\'s key goes up');
ok(!exists $m->{request_headers}{authorization}, 'and not the client\'s Authorization');
($r, $line, $m) = call('bob', sdk => 'anthropic', call => 'messages', model => 'claude-opus-4-1',
	max_tokens => 100);
is($r->{error_class}, 'PermissionDeniedError', 'anthropic: bob refused the opus model');
is(($r->{body}{error} // {})->{type}, 'permission_error', 'in Anthropic\'s error format');

# the report: per user and model, what the provider reported

my $j = quota_json(body(request('/report?format=json', cookie => $cookie{alice}))) // {};
my ($alice) = grep { $_->{email} eq 'alice@example.com' } @{ $j->{users} // [] };
my ($m4o) = grep { $_->{model} eq 'gpt-4o' } @{ $alice->{models} // [] };
my @charged = grep { ($_->{model} // '') eq 'gpt-4o' && $_->{usage} && $_->{status} == 200 }
	@{ mock_log($mock) };
my ($in, $out) = (0, 0);
for (@charged) {
	$in += $_->{usage}{prompt_tokens} // $_->{usage}{input_tokens};
	$out += $_->{usage}{completion_tokens} // $_->{usage}{output_tokens};
}
my @est = grep { /model=gpt-4o .*src=estimated/ } log_lines($t, 'ai.log');
my ($ein, $eout) = (0, 0);
for (@est) { /in=(\d+) out=(\d+)/ and ($ein, $eout) = ($ein + $1, $eout + $2) }
is_deeply([ map { $m4o->{day}{$_} } qw/ input_tokens output_tokens / ], [ $in + $ein, $out + $eout ],
	'report: alice\'s gpt-4o tokens are the reported ones plus the fallback');

###############################################################################
