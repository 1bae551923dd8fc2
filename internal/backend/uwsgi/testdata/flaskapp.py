"""A small Flask application (Debian's python3-flask) for drover's tests."""
from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.route('/')
def index():
    return 'flask index'


@app.route('/users/<int:uid>')
def user(uid):
    return jsonify(id=uid, name='user%d' % uid)


@app.route('/api/sum', methods=['POST'])
def total():
    data = request.get_json()
    return jsonify(sum=sum(data['numbers']), count=len(data['numbers']))


@app.route('/where')
def where():
    return jsonify(url=url_for('user', uid=7, _external=True),
                   script_root=request.script_root, path=request.path)
