#!/usr/bin/env bash
# Resolve Apache Kafka (broker jars) from Maven Central into .cache/kafka/<version>/libs.
set -euo pipefail
version="${1:-4.1.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/kafka/$version"
command -v mvn >/dev/null || { echo "mvn (Apache Maven) is needed to fetch Kafka jars" >&2; exit 1; }
command -v java >/dev/null || { echo "java 17+ is needed to run the Kafka broker in tests" >&2; exit 1; }
mkdir -p "$dest"
echo "resolving org.apache.kafka:kafka_2.13:$version from Maven Central..."
mvn -q -B -f "$root/scripts/kafka-pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DoutputDirectory="$dest/libs" -DincludeScope=runtime
touch "$dest/.resolved"
echo "kafka $version: $(ls "$dest/libs" | wc -l) jars in $dest/libs"
