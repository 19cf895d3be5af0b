#!/usr/bin/perl

# gpt_auth: allowlist faults. While forked clients hammer a protected location (two worker
# processes), new allowlists are renamed into place: good, broken (twice, different lines),
# deleted, fixed. No client request fails, the last good list stays in force, each broken
# version is logged once per worker, the fixed file is picked up. Then without load: an
# emptied file (taken as broken: the last good list stays), a file made unreadable, changed while
# unreadable, made readable again, and a reload while unreadable.
#
# The phases without load run with one worker process (after a reload), so that every request
# of the test meets the same worker's view of the list.
#
# The workers run as "nobody" here (not as root like in the rest of the suite): root reads a
# file whatever its mode, so "unreadable" can only be tested with an unprivileged worker user.
# The master process stays root; the test directory is made traversable for the workers. The
# error log is at level info (not debug): the load makes thousands of requests.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use Hardening;

use Time::HiRes qw/ sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);
my $dir = $t->testdir();

# TEST_NGINX_GLOBALS may say "user root;": replace it
my $globals = $t->test_globals();
$globals =~ s/(^|[;\s])user\s+[^;]*;/$1/g;
$globals .= "\nuser nobody nogroup;\n" if $> == 0;
# thousands of requests: no [debug] lines (they would make the log huge and slow to check)
$globals =~ s/(error_log\s+\S+)\s+debug\s*;/$1 info;/;
chmod 0711, $dir;

my $conf = <<"EOF";

$globals

daemon off;
worker_processes %%WORKERS%%;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Pid \$pid always;

        location / {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/team.allow;
        }
    }
}

EOF

my sub write_conf {
	my ($workers) = @_;
	$t->write_file_expand('nginx.conf', $conf =~ s/%%WORKERS%%/$workers/r);
}

write_conf(2);

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$t->write_file('index.html', 'team page');
$t->write_file('team.allow', "alice\@example.com\nbob\@example.com\n");
chmod 0644, "$dir/team.allow", "$dir/index.html";

$t->run()->plan(35);

###############################################################################

my $LIST = "$dir/team.allow";

sub cookie {
	return 'gpt_auth=' . mint_cookie(key => $key, email => $_[0]);
}

# Status of 6 requests for a user: "200" or "403" when they agree, else all of them.
sub code {
	my ($email) = @_;
	my @s = map { status(request('/', cookie => cookie($email))) } 1 .. 6;
	my %u = map { $_ => 1 } @s;
	return keys(%u) == 1 ? $s[0] : "@s";
}

# A new version of the list, atomically (a new inode renamed over the old name).
my sub replace {
	my ($content, $mode) = @_;
	$t->write_file('team.allow.new', $content);
	chmod $mode // 0644, "$dir/team.allow.new";
	rename("$dir/team.allow.new", $LIST) or die "rename: $!";
}

# each worker re-checks the file at most once a second
sub settle { sleep(1.3) }

my $mark = log_offset($t);

###############################################################################
# under load

my $load = load_start($t, clients => 4, requests => [
	{ uri => '/', cookie => cookie('alice@example.com'), expect_body => qr/team page/ },
	{ uri => '/index.html', cookie => cookie('ALICE@example.com') },
]);
sleep(0.5);

is(code('bob@example.com'), 200, 'under load: bob on the first list');

replace("alice\@example.com\ncarol\@example.com\n");
settle();
is(code('bob@example.com') . ' ' . code('carol@example.com'), '403 200',
	'new list renamed into place: bob out, carol in');

replace("alice\@example.com\ncarol example.com\n");
settle();
is(code('carol@example.com') . ' ' . code('bob@example.com'), '200 403',
	'broken version 1 (line 2): the last good list stays in force');

replace("alice\@example.com\n# fine\n\@\@example.com\nbob\@example.com\n");
settle();
is(code('carol@example.com') . ' ' . code('bob@example.com'), '200 403',
	'broken version 2 (line 3): the last good list stays in force');

unlink($LIST) or die "unlink: $!";
settle();
is(code('carol@example.com') . ' ' . code('bob@example.com'), '200 403',
	'deleted: the last good list stays in force');

replace("alice\@example.com\ndave\@example.com\n");
settle();
is(code('dave@example.com') . ' ' . code('carol@example.com'), '200 403',
	'fixed file picked up: dave in, carol out');

my $res = load_stop($load);
ok($res->{total} >= 200, "load: $res->{total} requests in " . sprintf('%.1f', $res->{seconds})
	. 's');
is(join("\n", @{ $res->{bad} }), '', 'load: not one request failed (alice on every version)');

my $log = log_since($t, $mark);

# the error lines: once per worker and broken version, never more
sub per_worker {
	my ($re) = @_;
	my %n;
	$n{$1}++ while $log =~ /^.*\[error\] (\d+)#.*$re.*$/mg;
	return \%n;
}

for my $c ([ 'broken version 1', qr/allowlist "\Q$LIST\E": line 2: an entry must not contain spaces; keeping the last good list \(2 entries\)/ ],
	[ 'broken version 2', qr/allowlist "\Q$LIST\E": line 3: invalid domain after '\@'; keeping the last good list \(2 entries\)/ ],
	[ 'deleted file', qr/allowlist "\Q$LIST\E" \(2: No such file or directory\); keeping the last good list \(2 entries\)/ ]) {
	my ($name, $re) = @$c;
	my $n = per_worker($re);
	ok(keys %$n >= 1, "$name: an [error] logged (" . scalar(keys %$n) . ' workers)');
	is(join(',', grep { $n->{$_} != 1 } keys %$n), '', "$name: logged once per worker");
}
like($log, qr/\[notice\].*gpt_auth: allowlist "\Q$LIST\E" re-read: 2 entries \(was 2\)/,
	'the fixed file: notice');

###############################################################################
# without load, one worker: so that the requests of the test see every re-read (with two, a
# worker that served none of them since the last change would still have the previous list)

write_conf(1);
reload_and_wait($t);
is(code('dave@example.com') . ' ' . code('carol@example.com'), '200 403',
	'reloaded with one worker: the list is the same');

###############################################################################
# emptied to 0 bytes: far more likely a truncated file than a decision to lock everyone out, so
# it is taken as broken: the last good list stays in force and an [error] is logged (README:
# allowlists)

$mark = log_offset($t);
$t->write_file('team.allow', '');
settle();
is(code('dave@example.com') . ' ' . code('carol@example.com'), '200 403',
	'emptied: the last good list stays in force');
$log = log_since($t, $mark);
like($log, qr/\[error\].*gpt_auth: allowlist "\Q$LIST\E" is empty \(0 bytes: more likely truncated than meant; a list that allows nobody holds a comment line\); keeping the last good list \(2 entries\)/,
	'emptied: [error] "is empty (0 bytes ...)"');
is(scalar(() = $log =~ /is empty \(0 bytes/g), 1, 'emptied: logged once');

# a list that parses and lists nobody means nobody (issue 14: the last user could not be
# removed): replaced atomically by a file that holds only a comment

$mark = log_offset($t);
$t->write_file('team.allow.new', "# nobody for now\n");
rename("$dir/team.allow.new", $LIST) or die "rename: $!";
settle();
is(code('dave@example.com') . ' ' . code('carol@example.com'), '403 403',
	'a list of comments only: nobody passes');
like(log_since($t, $mark), qr/\[warn\].*gpt_auth: allowlist "\Q$LIST\E" re-read: 0 entries \(was 2\): it allows nobody/,
	'[warn]: it allows nobody');

$t->write_file('team.allow', "alice\@example.com\nerin\@example.com\n");
settle();
is(code('alice@example.com') . ' ' . code('erin@example.com'), '200 200',
	'refilled: picked up');

###############################################################################
# unreadable for the worker user

SKIP: {
	skip 'workers run as root: a file mode does not stop them', 12
		unless $> == 0 && (getpwnam('nobody'))[2];

	$mark = log_offset($t);
	chmod 0000, $LIST;
	settle();
	is(code('alice@example.com') . ' ' . code('erin@example.com'), '200 200',
		'made unreadable: the last good list stays in force');
	$log = log_since($t, $mark);
	like($log, qr/\[error\].*gpt_auth: allowlist "\Q$LIST\E" \(13: Permission denied\); keeping the last good list/,
		'made unreadable: an [error] is logged');

	# changed while unreadable (root writes it; the mode stays 000)
	$mark = log_offset($t);
	$t->write_file('team.allow', "alice\@example.com\nfrank\@example.com\n");
	is((stat $LIST)[2] & 07777, 0, 'sanity: still mode 000 after the rewrite');
	settle();
	is(code('alice@example.com') . ' ' . code('frank@example.com') . ' '
		. code('erin@example.com'), '200 403 200',
		'changed while unreadable: the last good list stays in force');
	$log = log_since($t, $mark);
	my $n = per_worker(qr/allowlist "\Q$LIST\E" \(13: Permission denied\); keeping the last good list \(2 entries\)/);
	ok(keys %$n >= 1, 'changed while unreadable: an [error] logged');
	is(join(',', grep { $n->{$_} != 1 } keys %$n), '', '... once per worker');

	# readable again, content unchanged since the failed read
	chmod 0644, $LIST;
	settle();
	is(code('frank@example.com') . ' ' . code('erin@example.com'), '200 403',
		'made readable again: the fixed file is picked up');

	# any later change is picked up in any case
	$t->write_file('team.allow', "alice\@example.com\nfrank\@example.com\ngina\@example.com\n");
	settle();
	is(code('gina@example.com') . ' ' . code('frank@example.com'), '200 200',
		'changed again while readable: picked up');

	# a reload while the file is unreadable for the workers: the master (root) reads it; the
	# new workers warn that they will not see changes
	chmod 0000, $LIST;
	$mark = log_offset($t);
	reload_and_wait($t);
	# (the request first: a new worker answers it only after its start-up, which logs the warning)
	is(code('gina@example.com'), 200, 'reload while unreadable: the list read by the master applies');
	$log = log_since($t, $mark);
	like($log, qr/\[warn\].*gpt_auth: allowlist "\Q$LIST\E" is not readable by the worker process \(13: Permission denied\)/,
		'reload while unreadable: the workers warn at start');
	chmod 0644, $LIST;
	$t->write_file('team.allow', "alice\@example.com\n");
	settle();
	is(code('gina@example.com'), 403, 'readable and changed after the reload: picked up');
	is(code('alice@example.com'), 200, 'alice still in');
}

$t->stop();
is(join("\n", crash_lines($t->read_file('error.log'))), '', 'no worker crashed');

###############################################################################
