#!/bin/sh
# Sleeps QUERY_STRING ms=N milliseconds and answers its pid (CGI).
ms=$(echo "$QUERY_STRING" | sed -n 's/.*ms=\([0-9]*\).*/\1/p')
[ -n "$ms" ] && sleep "$(awk "BEGIN{print $ms/1000}")"
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$$"
