#!/usr/bin/env bash
# Resolve Apache Kafka (broker jars) from Maven Central into .cache/kafka/<version>/libs, for
# `lookout up` and the test fixtures run from this checkout. The pom is the one lookout.broker
# resolves with on first start (broker/lookout/broker/kafka-pom.xml). The jars land in a
# staging folder first and .resolved is written last, so a download cut short is never used.
set -euo pipefail
version="${1:-4.1.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/kafka/$version"
command -v mvn >/dev/null || { echo "mvn (Apache Maven) is needed to fetch Kafka jars" >&2; exit 1; }
command -v java >/dev/null || { echo "java 17+ is needed to run the Kafka broker" >&2; exit 1; }
mkdir -p "$dest"
staging="$(mktemp -d "$dest/libs-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
echo "resolving org.apache.kafka:kafka_2.13:$version from Maven Central..."
mvn -q -B -f "$root/broker/lookout/broker/kafka-pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DoutputDirectory="$staging" -DincludeScope=runtime
rm -rf "$dest/libs"
mv "$staging" "$dest/libs"
touch "$dest/.resolved"
echo "kafka $version: $(ls "$dest/libs" | wc -l) jars in $dest/libs"
