"""ebsdray.io"""
