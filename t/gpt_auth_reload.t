#!/usr/bin/perl

# gpt_auth: key rotation and `nginx -s reload`. A new key signs while the old one still
# verifies; removing a key invalidates its cookies; a broken key file on reload keeps the
# running configuration; a new allowlist takes effect on reload.

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

my $t = Test::Nginx->new()->has(qw/http/);

$t->skip_errors_check('emerg', qr/gpt_auth_key_file.*line 1: key is not valid base64/)
	if $t->can('skip_errors_check');

my $conf = <<'EOF';

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
            gpt_auth_allowlist %%TESTDIR%%/%%LIST%%;
        }
    }
}

EOF

my sub write_conf {
	my ($list) = @_;
	(my $c = $conf) =~ s/%%LIST%%/$list/;
	$t->write_file_expand('nginx.conf', $c);
}

my sub write_keys {
	$t->write_file('keys', join('', map { key_line($_) . "\n" } @_));
	chmod 0600, $t->testdir() . '/keys';
}

my ($ka, $kb) = (new_key_bytes(), new_key_bytes());
write_keys($ka);
$t->write_file('first.allow', "\@example.com\n");
$t->write_file('second.allow', "carol\@example.com\n");
$t->write_file('index.html', 'protected');
write_conf('first.allow');

$t->run()->plan(12);

###############################################################################

sub code {
	my ($key, $email) = @_;
	$email //= 'alice@example.com';
	return status(request('/',
		cookie => 'gpt_auth=' . mint_cookie(key => $key, email => $email)));
}

is(code($ka), 200, 'key A: 200');
is(code($kb), 401, 'key B not yet in the file: 401');

# rotation: B signs from now on, A still verifies

write_keys($kb, $ka);
reload_and_wait($t);
is(code($ka), 200, 'after rotation: old key A still verifies');
is(code($kb), 200, 'after rotation: new key B verifies');

# A retired

write_keys($kb);
reload_and_wait($t);
is(code($ka), 401, 'after removing A: its cookies are refused');
is(code($kb), 200, 'B still verifies');

# a broken key file on reload: nginx keeps running the previous configuration

$t->write_file('keys', "not a key\n");
reload_and_wait($t);
is(code($kb), 200, 'broken key file: previous configuration still serves');
is(code($ka), 401, 'broken key file: previous configuration still refuses A');

# a new allowlist on reload

write_keys($kb);
write_conf('second.allow');
reload_and_wait($t);
is(code($kb, 'alice@example.com'), 403, 'new allowlist on reload: alice refused');
is(code($kb, 'carol@example.com'), 200, 'new allowlist on reload: carol admitted');

$t->stop();
my $log = $t->read_file('error.log');
like($log, qr/\[emerg\].*"gpt_auth_key_file" directive "\S+keys" line 1: key is not valid base64/,
	'the failed reload is logged with the reason');
like($log, qr/gpt_auth: access refused: session cookie "gpt_auth": cookie signed with an unknown key/,
	'retired key logged as unknown');

###############################################################################
