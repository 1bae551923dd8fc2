"""A small Flask app for drover's tests (Debian's python3-flask)."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/hello/<name>")
def hello(name):
    return "hello %s\n" % name


@app.route("/sum", methods=["POST"])
def total():
    data = request.get_json()
    return jsonify(sum=sum(data["numbers"]))
