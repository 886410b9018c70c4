import pandas as pd

from tutorial_utils import data


def test_summary_and_top_genres():
    ratings = pd.DataFrame(
        {"UserID": [0, 0, 0, 1], "MovieID": [0, 1, 2, 2], "Rating": [5, 3, 4, 1]}
    )
    movies = pd.DataFrame(
        {
            "MovieID": [0, 1, 2],
            "Title": ["a", "b", "c"],
            "Genres": ["Drama|Comedy", "Comedy", "Action"],
        }
    )
    assert data.summary(ratings) == {
        "users": 2,
        "movies": 3,
        "ratings": 4,
        "mean rating": 3.25,
        "median rating": 3.5,
    }
    assert data.top_genres(ratings, movies, 0) == [
        ("Comedy", 2),
        ("Drama", 1),
        ("Action", 1),
    ]
    assert data.top_genres(ratings, movies, 1, n=1) == [("Action", 1)]
    assert data.genre_counts(["A|B", "B"]) == {"A": 1, "B": 2}
