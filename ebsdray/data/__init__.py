"""ebsdray.data"""
