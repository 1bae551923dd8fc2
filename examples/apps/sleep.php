<?php
// Sleeps ?ms= milliseconds and answers its pid: drover's pooling tests.
usleep((int)($_GET['ms'] ?? 0) * 1000);
echo getmypid(), "\n";
