"""Every GraphQL document the load tester sends, in one place (postwire's own tests import
them from here too: tests/support/client.py)."""

LOGIN = """
mutation($u: String!, $p: String!) {
  login(username: $u, password: $p) { __typename ... on User { username isStaff } }
}"""

CREATE_POST = """
mutation($title: String!) {
  createPost(input: {title: $title, content: "postwire-loadtest"}) {
    __typename
    ... on Post { id }
    ... on OperationInfo { messages { kind message } }
  }
}"""

PUBLISH_POST = """
mutation($id: ID!) {
  publishPost(input: {id: $id}) {
    __typename
    ... on Post { id published publishedAt }
    ... on OperationInfo { messages { kind message } }
  }
}"""

POST_NOTIFY = "subscription { postNotify { id title publishAt seq } }"
SERVER_NODE = "subscription { serverNode }"
