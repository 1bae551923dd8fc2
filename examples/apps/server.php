<?php
// Shows what PHP sees of the request, reads the body exactly, and sets a
// status and a header: drover's FastCGI acceptance test.
if (isset($_GET['redirect'])) {
    header('Location: /elsewhere');
    exit;
}
$body = file_get_contents('php://input');
http_response_code(isset($_GET['status']) ? (int)$_GET['status'] : 200);
header('X-Drover-Test: yes');
header('Content-Type: application/json');
echo json_encode([
    'SCRIPT_NAME' => $_SERVER['SCRIPT_NAME'] ?? null,
    'PATH_INFO' => $_SERVER['PATH_INFO'] ?? null,
    'QUERY_STRING' => $_SERVER['QUERY_STRING'] ?? null,
    'REMOTE_ADDR' => $_SERVER['REMOTE_ADDR'] ?? null,
    'HTTPS' => $_SERVER['HTTPS'] ?? null,
    'body_len' => strlen($body),
    'body_md5' => md5($body),
]);
