#!/usr/bin/env perl
# rewrite.pl IN.cu OUT.cpp: turns a CUDA source into C++ for the host emulation
# (tests/emu/README.md). Line numbers are kept (a #line directive names the original file):
#   name<<<grid, block[, smem[, stream]]>>>(args);
#     -> emu_launch("name", __FILE__, __LINE__, emu_key(name), [&] { name(args); },
#                   grid, block[, smem[, stream]]);
#   (the launch's own file and line, which the #line directive keeps, name it in the
#   emulation's errors)
#   (name may be qualified and carry template arguments; the launch may span lines)
#   extern __shared__ [__align__(n)] TYPE name[];
#     -> TYPE *name = (TYPE *)emu::dynamic_smem();
# Dies, naming file:line, on a launch it cannot parse or any <<< / >>> / extern __shared__
# left over.
use strict;
use warnings;

die "usage: rewrite.pl IN.cu OUT.cpp\n" unless @ARGV == 2;
my ($in, $out) = @ARGV;
open(my $fh, '<', $in) or die "rewrite.pl: $in: $!\n";
my $src = do { local $/; <$fh> };
close $fh;

sub line_of { my ($pos) = @_; return 1 + (substr($src, 0, $pos) =~ tr/\n//); }
sub fail { my ($pos, $msg) = @_; die "rewrite.pl: $in:" . line_of($pos) . ": $msg\n"; }

# Dynamic shared memory.
my $nshared = 0;
$src =~ s{extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?((?:unsigned\s+|signed\s+)?\w+)\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?(\w+)\s*\[\s*\]\s*;}
         {$nshared++; "$1 *$2 = ($1 *)emu::dynamic_smem();"}ge;

# Kernel launches, from the last one back, so earlier offsets stay valid.
my @launches;
while ($src =~ /<<</g) { push @launches, pos($src) - 3; }
for my $at (reverse @launches) {
    # The callee: identifier (with ::) and optional template arguments, right before <<<.
    my $i = $at - 1;
    $i-- while $i >= 0 && substr($src, $i, 1) =~ /\s/;
    my $end = $i + 1;
    if ($i >= 0 && substr($src, $i, 1) eq '>') {
        my $depth = 0;
        for (; $i >= 0; $i--) {
            my $c = substr($src, $i, 1);
            $depth++ if $c eq '>';
            $depth-- if $c eq '<';
            last if $depth == 0;
        }
        fail($at, "unbalanced template arguments before <<<") if $i < 0;
        $i--;
    }
    $i-- while $i >= 0 && substr($src, $i, 1) =~ /[\w:]/;
    my $start = $i + 1;
    my $callee = substr($src, $start, $end - $start);
    fail($at, "no kernel name before <<<") unless $callee =~ /^[A-Za-z_][\w:]*\s*(<.*>)?$/s;
    # The configuration, up to >>>.
    my $cfg_end = index($src, '>>>', $at + 3);
    fail($at, "<<< without >>>") if $cfg_end < 0;
    my $cfg = substr($src, $at + 3, $cfg_end - $at - 3);
    fail($at, "launch configuration contains <<<") if $cfg =~ /<<</;
    fail($at, "empty launch configuration") unless $cfg =~ /\S/;
    # The arguments: a balanced (...) then ;
    my $j = $cfg_end + 3;
    $j++ while $j < length($src) && substr($src, $j, 1) =~ /\s/;
    fail($at, "no ( after >>>") unless substr($src, $j, 1) eq '(';
    my $depth = 0;
    my $k = $j;
    for (; $k < length($src); $k++) {
        my $c = substr($src, $k, 1);
        $depth++ if $c eq '(';
        $depth-- if $c eq ')';
        last if $depth == 0;
    }
    fail($at, "unbalanced ( in the launch arguments") if $k >= length($src);
    my $args = substr($src, $j + 1, $k - $j - 1);
    my $semi = $k + 1;
    $semi++ while $semi < length($src) && substr($src, $semi, 1) =~ /\s/;
    fail($at, "no ; after the launch") unless substr($src, $semi, 1) eq ';';
    (my $name = $callee) =~ s/\s+/ /g;
    my $repl = "emu_launch(\"$name\", __FILE__, __LINE__, emu_key($callee), [&] { $callee($args); }, $cfg);";
    substr($src, $start, $semi + 1 - $start) = $repl;
}

for my $bad ('<<<', '>>>', 'extern __shared__') {
    my $p = index($src, $bad);
    fail($p, "'$bad' left after rewriting") if $p >= 0;
}

open(my $oh, '>', $out) or die "rewrite.pl: $out: $!\n";
print $oh "#line 1 \"$in\"\n$src";
close $oh;
printf "rewrite.pl: %s: %d launch(es), %d dynamic shared array(s)\n", $in, scalar(@launches), $nshared;
