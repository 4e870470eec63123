# -*- test-case-name: tests.test_reviews -*-
"""
Unit tests of what wardled asks the cluster it extends: the authorization
chain (L{wardled.auth.authz.Authorizer}), the review cache
(L{wardled.auth.ttlcache}), TokenReview (L{wardled.auth.tokenreview}),
SubjectAccessReview (L{wardled.auth.sar}), the client-CA ConfigMap
(L{wardled.auth.configmap}), which cluster each job uses
(L{wardled.kube.clusters}) and the NamespaceLifecycle admission plugin
(L{wardled.namespacelifecycle}).

The cluster is L{FakeKubeAPI}, an in-process stand-in for kube-apiserver
with the three calls of L{wardled.kube.client.KubeClient}; time is a
L{Clock}.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wardled import certs
from wardled.admission import CREATE, DELETE, UPDATE, Attributes
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.apierrors import StatusError
from wardled.auth.authz import Authorizer, Decision, forbidden_error
from wardled.auth.clientauth import (
    ClientAuth,
    ClientAuthSettings,
    RequestHeaderSettings,
)
from wardled.auth.configmap import (
    CONFIGMAP_PATH,
    REFRESH_INTERVAL,
    ConfigMapRefresher,
    flags_given,
    settings_from_flags,
)
from wardled.auth.interfaces import AuthenticationFailed
from wardled.auth.policy import Policy, PolicyRule
from wardled.auth.sar import (
    SUBJECT_ACCESS_REVIEWS_PATH,
    Review,
    ReviewFailed,
    SubjectAccessReviewer,
    review_spec,
    subject_access_review,
)
from wardled.auth.tokenreview import (
    TOKEN_REVIEWS_PATH,
    TokenReviewer,
    reviewed_user,
    token_review,
)
from wardled.auth.ttlcache import TTLCache
from wardled.auth.user import ANONYMOUS_USER, UserInfo
from wardled.config import WardledConfig
from wardled.kube.client import (
    KubeAPIError,
    KubeClient,
    KubeUnavailable,
    made_up_status,
)
from wardled.kube.clusters import Clusters, resolve_clusters
from wardled.kube.kubeconfig import ClusterConfig, KubeconfigError
from wardled.kube.reflector import Reflector
from wardled.namespacelifecycle import NAMESPACES_PATH, NamespaceLifecycle

JSON = dict[str, Any]
AUTHENTICATED = "system:authenticated"
FLUNDERS = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"

ALICE = UserInfo("alice", ("devs", AUTHENTICATED))
BOB = UserInfo("bob", (AUTHENTICATED,))
ADMIN = UserInfo("admin", ("system:masters", AUTHENTICATED))


def api_error(code: int, message: str = "") -> KubeAPIError:
    return KubeAPIError(code, made_up_status(code, message))


class FakeKubeAPI:
    """
    A stand-in for kube-apiserver, in-process: the C{get}, C{post} and
    C{watch} of L{KubeClient}, answered from L{answers} and recorded in
    L{calls}.

    @ivar answers: by path, what the cluster answers: a JSON object, an
        exception to raise (L{KubeAPIError}, L{KubeUnavailable}), a
        L{Deferred} to wait for (that fires with either), or, for C{post},
        a function of the posted body giving any of these.
    @ivar calls: C{(method, path, params or body)} for every call.
    @ivar watches: the Deferred of every watch (they never fire unless a
        test fires them); L{on_event} is the last watch's event handler.
    """

    def __init__(self, answers: Mapping[str, Any] | None = None) -> None:
        self.answers: dict[str, Any] = dict(answers or {})
        self.calls: list[tuple[str, str, Any]] = []
        self.watches: list[Deferred[None]] = []
        self.on_event: Callable[[JSON], None] | None = None

    def client(self) -> KubeClient:
        """
        This stand-in, typed as what the code under test expects.
        """
        return cast(KubeClient, self)

    def posted(self) -> list[JSON]:
        return [body for method, _, body in self.calls if method == "POST"]

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        self.calls.append(("GET", path, params))
        return await self._answer(self.answers[path])

    async def post(self, path: str, body: Mapping[str, Any]) -> JSON:
        self.calls.append(("POST", path, copy.deepcopy(dict(body))))
        answer = self.answers[path]
        if callable(answer):
            answer = answer(body)
        return await self._answer(answer)

    def watch(
        self, path: str, params: Mapping[str, str], on_event: Callable[[JSON], None]
    ) -> Deferred[None]:
        self.calls.append(("WATCH", path, dict(params)))
        self.on_event = on_event
        watching: Deferred[None] = Deferred()
        self.watches.append(watching)
        return watching

    async def _answer(self, answer: Any) -> JSON:
        if isinstance(answer, Deferred):
            answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        return cast(JSON, copy.deepcopy(answer))


# --- wardled.auth.ttlcache -------------------------------------------------------


class TTLCacheTests(SynchronousTestCase):
    """
    L{TTLCache} on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.asked: list[str] = []

    def asker(self, answer: Any) -> Callable[[], Any]:
        async def ask() -> Any:
            self.asked.append(answer)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return ask

    def get(self, cache: TTLCache[Any], key: str, answer: Any) -> Any:
        return self.successResultOf(ensureDeferred(cache.get(key, self.asker(answer))))

    def test_hit_before_ttl_miss_after(self) -> None:
        """
        An answer is reused until its ttl has passed, then asked again.
        """
        cache: TTLCache[str] = TTLCache(self.clock, lambda _: 10.0)
        self.assertEqual(self.get(cache, "k", "one"), "one")
        self.clock.advance(9.9)
        self.assertEqual(self.get(cache, "k", "two"), "one")
        self.assertEqual(cache.cached("k"), (True, "one"))
        self.clock.advance(0.1)
        self.assertEqual(cache.cached("k"), (False, None))
        self.assertEqual(self.get(cache, "k", "three"), "three")
        self.assertEqual(self.asked, ["one", "three"])

    def test_keys_apart(self) -> None:
        """
        Each key has its own answer.
        """
        cache: TTLCache[str] = TTLCache(self.clock, lambda _: 10.0)
        self.assertEqual(self.get(cache, "a", "A"), "A")
        self.assertEqual(self.get(cache, "b", "B"), "B")
        self.assertEqual(self.get(cache, "a", "x"), "A")

    def test_ttl_per_answer(self) -> None:
        """
        The ttl comes from the answer; 0 means not kept at all.
        """
        cache: TTLCache[int] = TTLCache(self.clock, lambda value: float(value))
        self.get(cache, "zero", 0)
        self.assertEqual(cache.cached("zero"), (False, None))
        self.get(cache, "five", 5)
        self.clock.advance(4)
        self.assertEqual(cache.cached("five"), (True, 5))
        self.clock.advance(1)
        self.assertEqual(cache.cached("five"), (False, None))

    def test_zero_ttl_takes_no_room(self) -> None:
        """
        An answer that is not kept does not push a kept one out.
        """
        cache: TTLCache[int] = TTLCache(
            self.clock, lambda value: float(value), max_entries=1
        )
        self.get(cache, "five", 5)
        self.get(cache, "zero", 0)
        self.assertEqual(cache.cached("five"), (True, 5))

    def test_one_question_in_flight(self) -> None:
        """
        A second caller for a key being asked waits for that answer; both
        get it, and it was asked once.
        """
        cache: TTLCache[str] = TTLCache(self.clock, lambda _: 10.0)
        pending: Deferred[str] = Deferred()
        asked = []

        def ask() -> Deferred[str]:
            asked.append("first")
            return pending

        def ask_again() -> Deferred[str]:
            asked.append("second")
            return Deferred()

        first = ensureDeferred(cache.get("k", ask))
        second = ensureDeferred(cache.get("k", ask_again))
        self.assertNoResult(first)
        self.assertNoResult(second)
        pending.callback("answer")
        self.assertEqual(self.successResultOf(first), "answer")
        self.assertEqual(self.successResultOf(second), "answer")
        self.assertEqual(asked, ["first"])
        self.assertEqual(cache.cached("k"), (True, "answer"))

    def test_zero_ttl_still_shared_in_flight(self) -> None:
        """
        Even an answer that is not kept reaches every caller that waited.
        """
        cache: TTLCache[str] = TTLCache(self.clock, lambda _: 0.0)
        pending: Deferred[str] = Deferred()
        first = ensureDeferred(cache.get("k", lambda: pending))
        second = ensureDeferred(cache.get("k", self.asker("other")))
        pending.callback("answer")
        self.assertEqual(
            (self.successResultOf(first), self.successResultOf(second)),
            ("answer", "answer"),
        )
        self.assertEqual(self.asked, [])
        self.assertEqual(cache.cached("k"), (False, None))

    def test_exception_reaches_waiters_not_cached(self) -> None:
        """
        An exception from the question reaches every waiting caller and is
        not kept: the next caller asks again.
        """
        cache: TTLCache[str] = TTLCache(self.clock, lambda _: 10.0)
        pending: Deferred[str] = Deferred()
        first = ensureDeferred(cache.get("k", lambda: pending))
        second = ensureDeferred(cache.get("k", self.asker("unused")))
        pending.errback(ValueError("cluster down"))
        self.assertEqual(
            str(self.failureResultOf(first, ValueError).value), "cluster down"
        )
        self.assertEqual(
            str(self.failureResultOf(second, ValueError).value), "cluster down"
        )
        self.assertEqual(cache.cached("k"), (False, None))
        self.assertEqual(self.get(cache, "k", "back"), "back")
        self.assertEqual(self.asked, ["back"])

    def test_max_entries_evicts_oldest(self) -> None:
        """
        Past C{max_entries}, the oldest answer goes.
        """
        cache: TTLCache[str] = TTLCache(self.clock, lambda _: 10.0, max_entries=2)
        self.get(cache, "a", "A")
        self.get(cache, "b", "B")
        self.get(cache, "c", "C")
        self.assertEqual(cache.cached("a"), (False, None))
        self.assertEqual(cache.cached("b"), (True, "B"))
        self.assertEqual(cache.cached("c"), (True, "C"))


# --- wardled.auth.tokenreview --------------------------------------------------------


def authenticated_review(user: JSON) -> JSON:
    return {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": {"authenticated": True, "user": user},
    }


UNAUTHENTICATED_REVIEW = {"status": {"user": {}, "error": "invalid bearer token"}}
JANE = {
    "username": "jane",
    "uid": "42",
    "groups": ["devs", AUTHENTICATED],
    "extra": {"scopes": ["view", "edit"], "acme.com/project": ["p"]},
}


class TokenReviewerTests(SynchronousTestCase):
    """
    L{TokenReviewer} against L{FakeKubeAPI}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeKubeAPI()
        self.reviewer = TokenReviewer(self.cluster.client(), self.clock, ttl=10.0)

    def answer(self, by_token: Mapping[str, Any]) -> None:
        self.cluster.answers[TOKEN_REVIEWS_PATH] = lambda body: by_token.get(
            body["spec"]["token"], UNAUTHENTICATED_REVIEW
        )

    def check(self, token: str) -> UserInfo | None:
        return self.successResultOf(ensureDeferred(self.reviewer.check(token)))

    def test_body(self) -> None:
        """
        The TokenReview posted is exactly what client-go sends.
        """
        self.answer({})
        self.check("s3cret")
        self.assertEqual(
            [(method, path) for method, path, _ in self.cluster.calls],
            [("POST", TOKEN_REVIEWS_PATH)],
        )
        self.assertEqual(
            json.dumps(self.cluster.posted()[0], separators=(",", ":")),
            '{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",'
            '"metadata":{"creationTimestamp":null},"spec":{"token":"s3cret"},'
            '"status":{"user":{}}}',
        )
        self.assertEqual(token_review("s3cret"), self.cluster.posted()[0])

    def test_authenticated(self) -> None:
        """
        An authenticated answer is the user with its groups, uid and extra.
        """
        self.answer({"good": authenticated_review(JANE)})
        self.assertEqual(
            self.check("good"),
            UserInfo(
                "jane",
                ("devs", AUTHENTICATED),
                uid="42",
                extra=(("acme.com/project", ("p",)), ("scopes", ("view", "edit"))),
            ),
        )

    def test_unauthenticated(self) -> None:
        """
        An unauthenticated answer (kube-apiserver's for an unknown token) is
        no user; so is an authenticated one without a user name.
        """
        self.answer({"nameless": authenticated_review({"uid": "1"})})
        self.assertIsNone(self.check("unknown"))
        self.assertIsNone(self.check("nameless"))
        self.assertIsNone(reviewed_user({}))
        self.assertIsNone(reviewed_user({"status": {"authenticated": "true"}}))

    def test_cached_for_ttl(self) -> None:
        """
        Answers, user or not, are kept for the ttl: one post for two checks,
        another once the ttl has passed.
        """
        self.answer({"good": authenticated_review(JANE)})
        for token in ("good", "bad"):
            first = self.check(token)
            self.assertEqual(self.check(token), first)
        self.assertEqual(len(self.cluster.posted()), 2)
        self.clock.advance(10)
        self.assertEqual(self.check("good").name, "jane")  # type: ignore[union-attr]
        self.assertEqual(len(self.cluster.posted()), 3)

    def test_token_not_kept_in_clear(self) -> None:
        """
        The cache is keyed by a digest, not by the token.
        """
        self.answer({})
        self.check("s3cret")
        self.assertNotIn("s3cret", repr(self.reviewer._answers._entries))

    def test_cluster_failure(self) -> None:
        """
        A cluster that cannot be asked, or answers an error, fails the
        credential, and that is not kept: the next check asks again.
        """
        for error in (KubeUnavailable("connection refused"), api_error(500, "boom")):
            self.cluster.answers[TOKEN_REVIEWS_PATH] = error
            failure = self.failureResultOf(
                ensureDeferred(self.reviewer.check("t")), AuthenticationFailed
            )
            self.assertIn("TokenReview failed", str(failure.value))
        self.answer({"t": authenticated_review(JANE)})
        self.assertEqual(self.check("t").name, "jane")  # type: ignore[union-attr]
        self.assertEqual(len(self.cluster.posted()), 3)


# --- wardled.auth.sar -------------------------------------------------------------


def info(method: str, path: str) -> RequestInfo:
    return parse_request_info(method, path, False)


def review_answer(allowed: bool, reason: str = "", denied: bool = False) -> JSON:
    status: JSON = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    if denied:
        status["denied"] = True
    return {"kind": "SubjectAccessReview", "status": status}


class ReviewSpecTests(SynchronousTestCase):
    """
    L{review_spec} and L{subject_access_review}.
    """

    def test_list(self) -> None:
        """
        A list has no name; empty fields are left out.
        """
        self.assertEqual(
            review_spec(ALICE, info("GET", FLUNDERS)),
            {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "list",
                    "group": "wardle.example.com",
                    "version": "v1alpha1",
                    "resource": "flunders",
                },
                "user": "alice",
                "groups": ["devs", AUTHENTICATED],
            },
        )

    def test_cluster_scoped_with_subresource(self) -> None:
        """
        A cluster-scoped object has no namespace; name and subresource are
        there.
        """
        request = info("PUT", "/apis/wardle.example.com/v1alpha1/fischers/f/status")
        self.assertEqual(
            review_spec(BOB, request)["resourceAttributes"],
            {
                "verb": "update",
                "group": "wardle.example.com",
                "version": "v1alpha1",
                "resource": "fischers",
                "subresource": "status",
                "name": "f",
            },
        )

    def test_non_resource(self) -> None:
        """
        A non-resource request is a path and a verb.
        """
        self.assertEqual(
            review_spec(UserInfo("bob"), info("GET", "/openapi/v2")),
            {
                "nonResourceAttributes": {"path": "/openapi/v2", "verb": "get"},
                "user": "bob",
            },
        )

    def test_extra_and_uid(self) -> None:
        """
        Extra is a map of lists; the uid is sent.
        """
        user = UserInfo(
            "jane", (), uid="42", extra=(("scopes", ("view", "edit")), ("x", ()))
        )
        spec = review_spec(user, info("GET", "/healthz"))
        self.assertEqual(spec["extra"], {"scopes": ["view", "edit"], "x": []})
        self.assertEqual(spec["uid"], "42")
        self.assertNotIn("groups", spec)

    def test_whole_review(self) -> None:
        """
        The posted object, in the order client-go writes it.
        """
        spec = {"user": "bob"}
        self.assertEqual(
            json.dumps(subject_access_review(spec), separators=(",", ":")),
            '{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1",'
            '"metadata":{"creationTimestamp":null},"spec":{"user":"bob"},'
            '"status":{"allowed":false}}',
        )


class SubjectAccessReviewerTests(SynchronousTestCase):
    """
    L{SubjectAccessReviewer} against L{FakeKubeAPI}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeKubeAPI()
        self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = self.decide
        self.reviewer = SubjectAccessReviewer(
            self.cluster.client(), self.clock, authorized_ttl=30.0, unauthorized_ttl=5.0
        )

    def decide(self, body: JSON) -> JSON:
        if body["spec"]["user"] == "alice":
            return review_answer(True)
        return review_answer(False, "no RBAC policy matched")

    def review(self, user: UserInfo, request: RequestInfo) -> Review:
        return self.successResultOf(ensureDeferred(self.reviewer.review(user, request)))

    def posts_for(self, user: str) -> int:
        return sum(body["spec"]["user"] == user for body in self.cluster.posted())

    def test_posted(self) -> None:
        """
        The review for a request is posted once, with its spec.
        """
        request = info("GET", FLUNDERS + "/x")
        self.assertEqual(self.review(ALICE, request), Review(True, ""))
        self.assertEqual(
            self.cluster.calls,
            [
                (
                    "POST",
                    SUBJECT_ACCESS_REVIEWS_PATH,
                    subject_access_review(review_spec(ALICE, request)),
                )
            ],
        )

    def test_answers_cached_apart(self) -> None:
        """
        Allowed answers are kept for the authorized ttl, denials for the
        unauthorized ttl; the reason is kept.
        """
        request = info("GET", FLUNDERS)
        self.assertEqual(
            self.review(BOB, request), Review(False, "no RBAC policy matched")
        )
        self.review(ALICE, request)
        self.review(BOB, request)
        self.review(ALICE, request)
        self.assertEqual((self.posts_for("alice"), self.posts_for("bob")), (1, 1))
        self.clock.advance(5)
        self.review(BOB, request)
        self.review(ALICE, request)
        self.assertEqual((self.posts_for("alice"), self.posts_for("bob")), (1, 2))
        self.clock.advance(25)
        self.review(ALICE, request)
        self.assertEqual(self.posts_for("alice"), 2)

    def test_different_requests_asked_apart(self) -> None:
        """
        Another verb or name is another question.
        """
        self.review(ALICE, info("GET", FLUNDERS))
        self.review(ALICE, info("GET", FLUNDERS + "/x"))
        self.review(ALICE, info("DELETE", FLUNDERS + "/x"))
        self.assertEqual(self.posts_for("alice"), 3)

    def test_denied_wins(self) -> None:
        """
        C{denied: true} is not allowed, whatever C{allowed} says; a missing
        status is not allowed either.
        """
        self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = review_answer(
            True, "explicit deny", denied=True
        )
        self.assertEqual(
            self.review(ALICE, info("GET", FLUNDERS)), Review(False, "explicit deny")
        )
        self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = {
            "kind": "SubjectAccessReview"
        }
        self.assertEqual(self.review(ALICE, info("GET", "/metrics")), Review(False, ""))

    def test_failure_not_cached(self) -> None:
        """
        A cluster that cannot be asked is L{ReviewFailed}, not kept.
        """
        request = info("GET", FLUNDERS)
        for error in (KubeUnavailable("timed out"), api_error(403, "forbidden")):
            self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = error
            failure = self.failureResultOf(
                ensureDeferred(self.reviewer.review(ALICE, request)), ReviewFailed
            )
            self.assertIn("SubjectAccessReview failed", str(failure.value))
        self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = self.decide
        self.assertTrue(self.review(ALICE, request).allowed)
        self.assertEqual(self.posts_for("alice"), 3)


# --- wardled.auth.authz ---------------------------------------------------------------


GRANT_ALICE_GET = Policy(
    (PolicyRule(verbs=("get",), users=("alice",), resources=("flunders",)),)
)


class AuthorizerTests(SynchronousTestCase):
    """
    L{Authorizer}: masters, always-allowed paths, the policy, then the
    cluster.
    """

    def setUp(self) -> None:
        self.cluster = FakeKubeAPI()
        self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = self.decide
        self.reviewer = SubjectAccessReviewer(self.cluster.client(), Clock())

    def decide(self, body: JSON) -> JSON:
        if body["spec"]["user"] == "carol":
            return review_answer(True, "RBAC: allowed by ClusterRoleBinding")
        return review_answer(False, "no RBAC policy matched")

    def decision(
        self, authorizer: Authorizer, user: UserInfo, request: RequestInfo
    ) -> Decision:
        return self.successResultOf(ensureDeferred(authorizer(user, request)))

    def test_masters(self) -> None:
        """
        C{system:masters} may do anything; the cluster is not asked.
        """
        authorizer = Authorizer(reviewer=self.reviewer)
        self.assertTrue(
            self.decision(authorizer, ADMIN, info("DELETE", FLUNDERS)).allowed
        )
        self.assertEqual(self.cluster.calls, [])

    def test_always_allow_paths(self) -> None:
        """
        The always-allowed paths are open to anyone, exactly or by a
        C{/prefix*} pattern; a sub-path of an exact one is not.
        """
        authorizer = Authorizer(
            reviewer=self.reviewer, always_allow_paths=("/healthz", "/debug/*")
        )
        for path in ("/healthz", "/debug/pprof", "/debug/"):
            decision = self.decision(authorizer, ANONYMOUS_USER, info("GET", path))
            self.assertTrue(decision.allowed, path)
        self.assertEqual(self.cluster.calls, [])
        decision = self.decision(
            authorizer, ANONYMOUS_USER, info("GET", "/healthz/etcd")
        )
        self.assertEqual(decision, Decision(False, "no RBAC policy matched"))
        self.assertEqual(len(self.cluster.posted()), 1)

    def test_always_allow_paths_are_not_resources(self) -> None:
        """
        An always-allowed path pattern covers non-resource requests only;
        a resource request under it is still the cluster's to decide
        (k8s.io/apiserver's path authorizer has no opinion on resource
        requests).
        """
        authorizer = Authorizer(reviewer=self.reviewer, always_allow_paths=("/apis/*",))
        self.assertTrue(
            self.decision(
                authorizer, ANONYMOUS_USER, info("GET", "/apis/wardle.example.com")
            ).allowed
        )
        decision = self.decision(authorizer, ANONYMOUS_USER, info("GET", FLUNDERS))
        self.assertEqual(decision, Decision(False, "no RBAC policy matched"))

    def test_default_always_allow_paths(self) -> None:
        """
        By default /healthz, /readyz and /livez, as in the reference.
        """
        authorizer = Authorizer(reviewer=self.reviewer)
        for path in ("/healthz", "/readyz", "/livez"):
            self.assertTrue(
                self.decision(authorizer, ANONYMOUS_USER, info("GET", path)).allowed
            )
        self.assertEqual(self.cluster.calls, [])

    def test_stand_alone(self) -> None:
        """
        Without a reviewer the stand-alone rules hold: open paths, discovery
        for authenticated users, the policy; anonymous users are challenged.
        """
        authorizer = Authorizer(policy=GRANT_ALICE_GET)
        self.assertTrue(authorizer.challenges_anonymous)
        self.assertFalse(Authorizer(reviewer=self.reviewer).challenges_anonymous)
        cases = [
            (ANONYMOUS_USER, info("GET", "/version"), True),
            (ANONYMOUS_USER, info("GET", "/apis"), False),
            (BOB, info("GET", "/apis"), True),
            (ALICE, info("GET", FLUNDERS + "/x"), True),
            (ALICE, info("DELETE", FLUNDERS + "/x"), False),
            (BOB, info("GET", FLUNDERS + "/x"), False),
        ]
        for user, request, allowed in cases:
            decision = self.decision(authorizer, user, request)
            self.assertEqual(decision, Decision(allowed), (user.name, request))

    def test_policy_before_cluster(self) -> None:
        """
        With a reviewer, what the policy grants is not asked about.
        """
        authorizer = Authorizer(policy=GRANT_ALICE_GET, reviewer=self.reviewer)
        self.assertTrue(
            self.decision(authorizer, ALICE, info("GET", FLUNDERS + "/x")).allowed
        )
        self.assertEqual(self.cluster.calls, [])

    def test_cluster_decides_the_rest(self) -> None:
        """
        Everything else is the cluster's answer, reason included; the
        stand-alone rules (such as discovery) are not used.
        """
        authorizer = Authorizer(policy=GRANT_ALICE_GET, reviewer=self.reviewer)
        self.assertEqual(
            self.decision(authorizer, ALICE, info("DELETE", FLUNDERS + "/x")),
            Decision(False, "no RBAC policy matched"),
        )
        self.assertEqual(
            self.decision(
                authorizer, UserInfo("carol"), info("DELETE", FLUNDERS + "/x")
            ),
            Decision(True, "RBAC: allowed by ClusterRoleBinding"),
        )
        self.assertFalse(self.decision(authorizer, BOB, info("GET", "/apis")).allowed)
        self.assertEqual(len(self.cluster.posted()), 3)

    def test_cluster_unreachable(self) -> None:
        """
        When only the cluster could say and it cannot be asked, the caller
        gets L{ReviewFailed}.
        """
        self.cluster.answers[SUBJECT_ACCESS_REVIEWS_PATH] = KubeUnavailable("refused")
        authorizer = Authorizer(reviewer=self.reviewer)
        self.failureResultOf(
            ensureDeferred(authorizer(BOB, info("GET", FLUNDERS))), ReviewFailed
        )

    def test_forbidden_with_reason(self) -> None:
        """
        The cluster's reason is appended to the 403 message after C{": "}.
        """
        request = info("GET", FLUNDERS + "/x")
        error = forbidden_error(BOB, request, "no RBAC policy matched")
        self.assertEqual(error.code, 403)
        self.assertEqual(
            error.message,
            'flunders.wardle.example.com "x" is forbidden: User "bob" cannot get '
            'resource "flunders" in API group "wardle.example.com" in the namespace '
            '"default": no RBAC policy matched',
        )
        self.assertEqual(
            forbidden_error(BOB, info("GET", "/metrics"), "nope").message,
            'forbidden: User "bob" cannot get path "/metrics": nope',
        )
        self.assertFalse(forbidden_error(BOB, request).message.endswith(": "))


# --- wardled.auth.configmap -------------------------------------------------------


CLIENT_CA = certs.make_ca("client-ca")
PROXY_CA = certs.make_ca("front-proxy-ca")
ROTATED_CA = certs.make_ca("rotated-ca")


def pem(pair: certs.KeyPair) -> str:
    return pair.certificate_pem().decode("ascii")


def configmap(data: Mapping[str, str]) -> JSON:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": "extension-apiserver-authentication",
            "namespace": "kube-system",
        },
        "data": dict(data),
    }


class SettingsFromFlagsTests(SynchronousTestCase):
    """
    L{settings_from_flags} and L{flags_given}.
    """

    def test_flags(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        client_file = os.path.join(directory, "client-ca.crt")
        proxy_file = os.path.join(directory, "proxy-ca.crt")
        certs.write_file(client_file, CLIENT_CA.certificate_pem())
        certs.write_file(proxy_file, PROXY_CA.certificate_pem())
        config = WardledConfig(
            client_ca_file=client_file,
            requestheader_client_ca_file=proxy_file,
            requestheader_allowed_names=("front-proxy-client",),
            requestheader_uid_headers=("X-Remote-Uid",),
        )
        self.assertEqual(
            settings_from_flags(config),
            ClientAuthSettings(
                (CLIENT_CA.certificate,),
                RequestHeaderSettings(
                    (PROXY_CA.certificate,),
                    ("front-proxy-client",),
                    uid_headers=("X-Remote-Uid",),
                ),
            ),
        )
        self.assertEqual(flags_given(config), (True, True))
        self.assertEqual(settings_from_flags(WardledConfig()), ClientAuthSettings())
        self.assertEqual(
            flags_given(WardledConfig(client_ca_file=client_file)), (True, False)
        )


class ConfigMapRefresherTests(SynchronousTestCase):
    """
    L{ConfigMapRefresher} against L{FakeKubeAPI} on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeKubeAPI()
        self.flags = ClientAuthSettings((CLIENT_CA.certificate,))
        self.client_auth = ClientAuth(self.flags, (True, False))
        self.refresher = ConfigMapRefresher(
            self.cluster.client(), self.clock, self.client_auth
        )
        self.proxy_data = {
            "client-ca-file": pem(ROTATED_CA),
            "requestheader-client-ca-file": pem(PROXY_CA),
            "requestheader-allowed-names": '["front-proxy-client"]',
        }
        self.with_proxy = ClientAuthSettings(
            (CLIENT_CA.certificate,),
            RequestHeaderSettings((PROXY_CA.certificate,), ("front-proxy-client",)),
        )

    def refresh(self, answer: Any) -> None:
        self.cluster.answers[CONFIGMAP_PATH] = answer
        self.successResultOf(self.refresher.refresh())

    def test_configmap_installed(self) -> None:
        """
        The ConfigMap's front-proxy settings are installed; the flag's
        client CA wins over the ConfigMap's.
        """
        self.refresh(configmap(self.proxy_data))
        self.assertEqual(self.client_auth.settings, self.with_proxy)
        self.assertEqual(
            self.client_auth.handshake_authorities,
            (CLIENT_CA.certificate, PROXY_CA.certificate),
        )
        self.assertEqual(self.cluster.calls, [("GET", CONFIGMAP_PATH, None)])

    def test_change_updates(self) -> None:
        """
        A rotated front-proxy CA replaces the old one and its verifier;
        an unchanged ConfigMap keeps the verifiers.
        """
        self.refresh(configmap(self.proxy_data))
        verifier = self.client_auth.requestheader_verifier
        self.refresh(configmap(self.proxy_data))
        self.assertIs(self.client_auth.requestheader_verifier, verifier)
        rotated = {**self.proxy_data, "requestheader-client-ca-file": pem(ROTATED_CA)}
        self.refresh(configmap(rotated))
        self.assertIsNot(self.client_auth.requestheader_verifier, verifier)
        self.assertEqual(
            self.client_auth.requestheader_verifier.authorities,
            (ROTATED_CA.certificate,),
        )

    def test_not_found_means_flags(self) -> None:
        """
        A ConfigMap that no longer exists leaves the flags' settings.
        """
        self.refresh(configmap(self.proxy_data))
        self.refresh(api_error(404, "configmaps not found"))
        self.assertEqual(self.client_auth.settings, self.flags)

    def test_failures_keep_settings(self) -> None:
        """
        A read that fails, or a ConfigMap that holds garbage, keeps the
        settings in use; the next good read is installed.
        """
        self.refresh(configmap(self.proxy_data))
        in_use = self.client_auth.settings
        for answer in (
            KubeUnavailable("connection refused"),
            api_error(403, "forbidden"),
            api_error(500, "etcd down"),
            configmap({**self.proxy_data, "requestheader-allowed-names": "not json"}),
        ):
            self.refresh(answer)
            self.assertEqual(self.client_auth.settings, in_use, answer)
        self.refresh(api_error(404))
        self.assertEqual(self.client_auth.settings, self.flags)

    def test_periodic(self) -> None:
        """
        As a service it reads at once, then every L{REFRESH_INTERVAL}.
        """
        self.cluster.answers[CONFIGMAP_PATH] = configmap(self.proxy_data)
        self.refresher.startService()
        self.addCleanup(self.refresher.stopService)
        self.assertEqual(self.client_auth.settings, self.with_proxy)
        self.cluster.answers[CONFIGMAP_PATH] = configmap({})
        self.clock.advance(REFRESH_INTERVAL - 0.5)
        self.assertEqual(self.client_auth.settings, self.with_proxy)
        self.clock.advance(0.5)
        self.assertEqual(self.client_auth.settings, self.flags)
        self.assertEqual(len(self.cluster.calls), 2)


# --- wardled.kube.clusters ---------------------------------------------------------


class ResolveClustersTests(SynchronousTestCase):
    """
    L{resolve_clusters}: kubeconfig flags, else in-cluster, else none.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.ca_file = os.path.join(self.directory, "ca.crt")
        certs.write_file(self.ca_file, CLIENT_CA.certificate_pem())
        self.root = os.path.join(self.directory, "serviceaccount")
        certs.write_file(os.path.join(self.root, "token"), b"sa-token\n")
        certs.write_file(os.path.join(self.root, "ca.crt"), PROXY_CA.certificate_pem())
        self.environ = {
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        }
        self.in_cluster = ClusterConfig(
            server="https://10.0.0.1:443",
            ca_data=PROXY_CA.certificate_pem(),
            token_file=os.path.join(self.root, "token"),
        )

    def kubeconfig(self, name: str, server: str) -> str:
        path = os.path.join(self.directory, name)
        certs.write_kubeconfig(path, server, self.ca_file, None, None, "someone")
        return path

    def test_flags(self) -> None:
        """
        Each flag's kubeconfig is read, whatever the environment.
        """
        config = WardledConfig(
            authentication_kubeconfig=self.kubeconfig("authn", "https://a:6443"),
            authorization_kubeconfig=self.kubeconfig("authz", "https://b:6443"),
            kubeconfig=self.kubeconfig("core", "https://c:6443"),
        )
        ca_data = CLIENT_CA.certificate_pem()
        self.assertEqual(
            resolve_clusters(config, self.environ, self.root),
            Clusters(
                ClusterConfig("https://a:6443", ca_data),
                ClusterConfig("https://b:6443", ca_data),
                ClusterConfig("https://c:6443", ca_data),
            ),
        )

    def test_in_cluster(self) -> None:
        """
        Without flags, in a pod, all three are the pod's service account;
        a flag still wins for its own job.
        """
        self.assertEqual(
            resolve_clusters(WardledConfig(), self.environ, self.root),
            Clusters(self.in_cluster, self.in_cluster, self.in_cluster),
        )
        config = WardledConfig(kubeconfig=self.kubeconfig("core", "https://c:6443"))
        clusters = resolve_clusters(config, self.environ, self.root)
        self.assertEqual(clusters.authentication, self.in_cluster)
        self.assertEqual(
            clusters.core, ClusterConfig("https://c:6443", CLIENT_CA.certificate_pem())
        )

    def test_stand_alone(self) -> None:
        """
        Without flags or a pod environment nothing is delegated.
        """
        self.assertEqual(resolve_clusters(WardledConfig(), {}, self.root), Clusters())
        half = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
        self.assertEqual(resolve_clusters(WardledConfig(), half, self.root), Clusters())

    def test_bad_kubeconfig(self) -> None:
        """
        A kubeconfig that cannot be used, or a broken service-account
        mount, is a L{KubeconfigError}.
        """
        broken = os.path.join(self.directory, "broken")
        certs.write_file(broken, b"clusters: [\n")
        missing = os.path.join(self.directory, "missing")
        for config in (
            WardledConfig(authorization_kubeconfig=broken),
            WardledConfig(kubeconfig=missing),
        ):
            self.assertRaises(KubeconfigError, resolve_clusters, config, {}, self.root)
        self.assertRaises(
            KubeconfigError,
            resolve_clusters,
            WardledConfig(),
            self.environ,
            os.path.join(self.directory, "nowhere"),
        )


# --- wardled.namespacelifecycle ------------------------------------------------------


def namespace(name: str, phase: str = "Active") -> JSON:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name, "resourceVersion": "5"},
        "status": {"phase": phase},
    }


def namespace_list(*items: JSON) -> JSON:
    return {
        "kind": "NamespaceList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "10"},
        "items": list(items),
    }


def create(namespace_name: str, name: str = "x", operation: str = CREATE) -> Attributes:
    return Attributes(
        operation=operation,
        group="wardle.example.com",
        kind="Flunder",
        resource="flunders",
        namespace=namespace_name,
        name=name,
        obj={},
        user=ALICE,
    )


class NamespaceLifecycleTests(SynchronousTestCase):
    """
    L{NamespaceLifecycle} over a real L{Reflector} fed by L{FakeKubeAPI}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeKubeAPI()
        self.cluster.answers[NAMESPACES_PATH] = namespace_list(
            namespace("default"), namespace("ns", "Terminating")
        )

    def plugin(self) -> NamespaceLifecycle:
        reflector = Reflector(self.clock, self.cluster.client(), NAMESPACES_PATH)
        reflector.startService()
        self.addCleanup(reflector.stopService)
        return NamespaceLifecycle(reflector, self.cluster.client(), self.clock)

    def live_gets(self) -> list[str]:
        return [
            path
            for method, path, _ in self.cluster.calls
            if method == "GET" and path != NAMESPACES_PATH
        ]

    def admit(self, plugin: NamespaceLifecycle, attributes: Attributes) -> None:
        self.successResultOf(ensureDeferred(plugin.admit(attributes)))

    def refused(
        self, plugin: NamespaceLifecycle, attributes: Attributes
    ) -> StatusError:
        failure = self.failureResultOf(
            ensureDeferred(plugin.admit(attributes)), StatusError
        )
        assert isinstance(failure.value, StatusError)
        return failure.value

    def test_handles_create_only(self) -> None:
        plugin = self.plugin()
        self.assertTrue(plugin.handles(CREATE))
        self.assertFalse(plugin.handles(UPDATE))
        self.assertFalse(plugin.handles(DELETE))

    def test_reflector_lists_then_watches(self) -> None:
        """
        The mirror is one LIST, then a WATCH from its resourceVersion.
        """
        self.plugin()
        self.assertEqual(
            [(method, path) for method, path, _ in self.cluster.calls],
            [("GET", NAMESPACES_PATH), ("WATCH", NAMESPACES_PATH)],
        )
        self.assertEqual(self.cluster.calls[1][2]["resourceVersion"], "10")

    def test_cluster_scoped(self) -> None:
        """
        An object without a namespace passes, even before the mirror is
        ready.
        """
        self.cluster.answers[NAMESPACES_PATH] = Deferred()
        self.admit(self.plugin(), create(""))
        self.assertEqual(self.live_gets(), [])

    def test_active(self) -> None:
        """
        An existing active namespace passes without a live lookup.
        """
        self.admit(self.plugin(), create("default"))
        self.assertEqual(self.live_gets(), [])

    def test_terminating(self) -> None:
        """
        A terminating namespace is a 403 with Kubernetes' message and a
        C{NamespaceTerminating} cause.
        """
        error = self.refused(self.plugin(), create("ns"))
        self.assertEqual((error.code, error.reason), (403, "Forbidden"))
        self.assertEqual(
            error.message,
            'flunders.wardle.example.com "x" is forbidden: unable to create new '
            "content in namespace ns because it is being terminated",
        )
        self.assertEqual(
            error.status()["details"],
            {
                "name": "x",
                "group": "wardle.example.com",
                "kind": "flunders",
                "causes": [
                    {
                        "reason": "NamespaceTerminating",
                        "message": "namespace ns is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            },
        )

    def test_watch_events_followed(self) -> None:
        """
        A namespace that starts terminating after the list is refused once
        the watch says so.
        """
        plugin = self.plugin()
        self.admit(plugin, create("default"))
        assert self.cluster.on_event is not None
        self.cluster.on_event(
            {"type": "MODIFIED", "object": namespace("default", "Terminating")}
        )
        self.assertEqual(self.refused(plugin, create("default")).code, 403)

    def test_unknown_found_live(self) -> None:
        """
        A namespace the mirror does not know yet, but the cluster has, passes
        after one live lookup; a live one that is terminating is refused.
        """
        self.cluster.answers[NAMESPACES_PATH + "/fresh"] = namespace("fresh")
        self.cluster.answers[NAMESPACES_PATH + "/going"] = namespace(
            "going", "Terminating"
        )
        plugin = self.plugin()
        self.admit(plugin, create("fresh"))
        self.assertEqual(self.live_gets(), [NAMESPACES_PATH + "/fresh"])
        self.assertEqual(self.refused(plugin, create("going")).code, 403)

    def test_missing(self) -> None:
        """
        A namespace the cluster does not have is a 404 naming the namespace.
        """
        self.cluster.answers[NAMESPACES_PATH + "/nope"] = api_error(404)
        error = self.refused(self.plugin(), create("nope"))
        self.assertEqual((error.code, error.reason), (404, "NotFound"))
        self.assertEqual(error.message, 'namespaces "nope" not found')
        self.assertEqual(error.details, {"name": "nope", "kind": "namespaces"})

    def test_live_lookup_fails(self) -> None:
        """
        Any other failure of the live lookup is a 500.
        """
        plugin = self.plugin()
        for error in (api_error(503, "unavailable"), KubeUnavailable("refused")):
            self.cluster.answers[NAMESPACES_PATH + "/what"] = error
            refusal = self.refused(plugin, create("what"))
            self.assertEqual((refusal.code, refusal.reason), (500, "InternalError"))
            self.assertIn(str(error), refusal.message)

    def test_waits_for_first_list(self) -> None:
        """
        A create before the mirror's first list waits for it, then is
        decided on it.
        """
        listing: Deferred[JSON] = Deferred()
        self.cluster.answers[NAMESPACES_PATH] = listing
        plugin = self.plugin()
        waiting = ensureDeferred(plugin.admit(create("default")))
        refused = ensureDeferred(plugin.admit(create("ns")))
        self.clock.advance(9)
        self.assertNoResult(waiting)
        listing.callback(
            namespace_list(namespace("default"), namespace("ns", "Terminating"))
        )
        self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual(self.failureResultOf(refused, StatusError).value.code, 403)
        self.assertEqual(self.live_gets(), [])

    def test_not_ready_in_time(self) -> None:
        """
        A mirror that has not listed within 10 s makes the create a 403
        "not yet ready to handle request".
        """
        self.cluster.answers[NAMESPACES_PATH] = Deferred()
        plugin = self.plugin()
        waiting = ensureDeferred(plugin.admit(create("default")))
        self.clock.advance(9.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        error = self.failureResultOf(waiting, StatusError).value
        assert isinstance(error, StatusError)
        self.assertEqual((error.code, error.reason), (403, "Forbidden"))
        self.assertEqual(
            error.message,
            'flunders.wardle.example.com "x" is forbidden: '
            "not yet ready to handle request",
        )
        self.assertEqual(plugin.namespaces._waiters, [])
