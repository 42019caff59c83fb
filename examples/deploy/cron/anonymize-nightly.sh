#!/usr/bin/env bash
# Nightly staging refresh for cron: secrets from a root-only env file, one JSON report per run,
# an alert when the run fails. Install as /usr/local/bin/anonymize-nightly (see crontab beside it).
#
# Exit code: anonymize's own (0 success, 1 runtime failure, 2 rules/usage/coverage, 130/143
# interrupted); on any failure staging still holds the previous night's data.
set -uo pipefail

env_file=${ANONYMIZE_ENV_FILE:-/etc/anonymize/env}
rules=${ANONYMIZE_RULES:-/etc/anonymize/customers.toml}
state_dir=${ANONYMIZE_STATE_DIR:-/var/lib/anonymize}
# The alert: any command taking the message as its last argument (a webhook script, mail, logger).
alert=${ANONYMIZE_ALERT:-logger -t anonymize -p user.err}

# PROD_DATABASE_URL, STAGING_DATABASE_URL and ANONYMIZE_KEY (see anonymize.env.example).
set -a
# shellcheck source=/dev/null
. "$env_file" || exit 2
set +a

mkdir -p "$state_dir"
report="$state_dir/report-$(date -u +%Y%m%dT%H%M%SZ)-$$.json"
anonymize --rules "$rules" --progress never --report "$report"
code=$?
ln -sfn "$report" "$state_dir/last-report.json"
# Keep two weeks of reports.
find "$state_dir" -name 'report-*.json' -mtime +14 -delete

if [ "$code" -ne 0 ]; then
    # The report says what failed ("status": "failed", "error") and which tables were done.
    $alert "anonymize: staging refresh failed with exit code $code (report: $report)"
fi
exit "$code"
