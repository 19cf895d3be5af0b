#!/usr/bin/perl

# gpt_auth: the gpt-auth command (keygen, key-ids, mint, inspect) against a running nginx.

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

my $cli = $ENV{GPT_AUTH_CLI} // "$FindBin::Bin/../target/release/gpt-auth";

my $t = Test::Nginx->new()->has(qw/http/);
my $d = $t->testdir();

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

        location / {
            gpt_auth on;
        }

        location /bot/ {
            gpt_auth on;
            gpt_auth_cookie_name bot;
            gpt_auth_cookie_max_age 1y;
        }
    }
}

EOF

-x $cli or BAIL_OUT("no gpt-auth command at $cli (build it: make build)");

my $key_line = `$cli keygen`;
my $keygen_rc = $?;
chomp $key_line;
my $old = key_line(new_key_bytes());
$t->write_file('keys', "$key_line\n$old\n");
chmod 0600, "$d/keys";
$t->write_file('index.html', 'protected');
mkdir("$d/bot");
$t->write_file('bot/index.html', 'bot area');

$t->run()->plan(14);

###############################################################################

is($keygen_rc, 0, 'keygen exits 0');
like($key_line, qr{^[A-Za-z0-9+/]{43}=$}, 'keygen prints one base64 key of 32 bytes');

my @ids = split /\n/, `$cli key-ids -k $d/keys`;
is(scalar @ids, 2, 'key-ids lists both keys');
like($ids[0], qr/^\S{8} \(signs\)$/, 'first key signs');
my ($signing_id) = split ' ', $ids[0];
is($ids[1], key_id(MIME::Base64::decode_base64($old)), 'key ids as the format document says');

my $value = `$cli mint -k $d/keys -e alice\@example.com`;
chomp $value;
like($value, qr/^1\.\Q$signing_id\E\./, 'minted cookie carries the signing key id');
is(status(request('/', cookie => "gpt_auth=$value")), 200, 'minted cookie accepted by nginx');

my $pair = `$cli mint -k $d/keys -e bot\@example.com --cookie-name bot --ttl 180d --pair`;
chomp $pair;
like($pair, qr/^bot=1\./, '--pair prints name=value');
is(status(request('/bot/', cookie => $pair)), 200,
	'long-lived bot cookie accepted where max age allows');
is(status(request('/', cookie => $pair)), 401, 'a cookie minted for "bot" is not a gpt_auth cookie');

my $past = time() - 120;
my $expired = `$cli mint -k $d/keys -e alice\@example.com --ttl 60 --now $past`;
chomp $expired;
is(status(request('/', cookie => "gpt_auth=$expired")), 401, 'minted expired cookie refused');

my $out = `$cli inspect -k $d/keys $value`;
is($?, 0, 'inspect: valid cookie exits 0');
like($out, qr/email:\s+alice\@example\.com.*result:\s+valid/s, 'inspect shows fields and result');

(my $tampered = $value) =~ s/\.([^.]+)$/.A$1/;
$out = `$cli inspect -k $d/keys '$tampered'`;
isnt($?, 0, 'inspect: tampered cookie exits non-zero');

###############################################################################
