"""ebsdray.tracking"""
