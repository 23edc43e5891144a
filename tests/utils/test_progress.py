from ragdistill.utils.progress import say


def test_say_prints_one_line(capsys):
    say("building the index")
    assert capsys.readouterr().out == "building the index\n"
