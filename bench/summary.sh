# summary.sh - reading SUMMARY lines in the bench scripts (sourced by ab.sh and targets.sh; not run on its own).

# The value of key $2 in SUMMARY line $1 (key=value fields separated by spaces; empty when absent).
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# The median of the numbers given (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2);
	printf "%.15g\n", NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2 }'; }
