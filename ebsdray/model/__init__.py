"""ebsdray.model"""
