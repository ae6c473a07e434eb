"""A person's browser following an approval link, played by Python's requests: open the
link, log in with the form, approve with the form, typing the credential values. The
session's cookie jar sends a cookie only to the path it was set for, as a browser does.

Inputs (environment): APPROVAL_URL, EMAIL, PASSWORD, CREDENTIALS (a JSON object
{"KEY": "value"}). Prints one JSON object: where each form posts, where the login
redirected to, the path of the session cookie and the outcome's text. Exits 1, with the
page on stderr, when an expected form is missing.
"""

import json
import os
import re
import sys
from urllib.parse import urljoin, urlsplit

import requests


def form(page, form_id):
    found = re.search(r'<form id="%s" method="post" action="([^"]*)">(.*?)</form>' % form_id, page.text, re.S)
    if not found:
        sys.stderr.write("no %s form on %s:\n%s\n" % (form_id, page.url, page.text))
        sys.exit(1)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found.group(2)))
    return found.group(1), hidden


def main():
    url = os.environ["APPROVAL_URL"]
    parts = urlsplit(url)
    origin = "%s://%s" % (parts.scheme, parts.netloc)
    browser = requests.Session()
    link = browser.get(url, timeout=30)
    login_action, fields = form(link, "login")
    fields.update(email=os.environ["EMAIL"], password=os.environ["PASSWORD"])
    logged_in = browser.post(urljoin(url, login_action), data=fields, headers={"Origin": origin}, timeout=30)
    redirect = logged_in.history[0] if logged_in.history else logged_in
    cookie_paths = sorted({cookie.path for cookie in browser.cookies})
    approve_action, fields = form(logged_in, "approve")
    reject_action, _ = form(logged_in, "reject")
    for key, value in json.loads(os.environ.get("CREDENTIALS", "{}")).items():
        fields["credential:" + key] = value
    done = browser.post(urljoin(url, approve_action), data=fields, headers={"Origin": origin}, timeout=30)
    outcome = re.search(r'<h1 id="outcome">([^<]*)</h1>', done.text)
    print(json.dumps({
        "actions": [login_action, approve_action, reject_action],
        "login_status": redirect.status_code,
        "login_location": redirect.headers.get("location"),
        "cookie_paths": cookie_paths,
        "outcome": outcome.group(1) if outcome else done.text,
    }))


main()
