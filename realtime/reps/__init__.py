"""reps"""
