"""ebsdray.aggregate"""
