from recognizer.scoring import mark_errors


def test_marks_substitutions_insertions_deletions():
    assert mark_errors("cat", "cat") == "cat"
    assert mark_errors("cat", "cut") == "c[a→u]t"
    assert mark_errors("cat", "cart") == "ca+rt"
    assert mark_errors("cart", "cat") == "ca-rt"
    assert mark_errors("", "ab") == "+a+b"
