"""ebsdray.inverse"""
